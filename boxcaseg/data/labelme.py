"""LabelMe JSON folders -> the internal COCO form.

One ``.json`` per image (the folder ``root``, not recursive), as LabelMe writes it::

    {"imagePath": "../images/a.jpg", "imageHeight": 480, "imageWidth": 640,
     "shapes": [{"label": "dog", "shape_type": "polygon", "points": [[x, y], ...],
                 "group_id": null}, ...]}

- ``imagePath`` is relative to the JSON file (``\\`` separators are accepted); the image
  file must exist (embedded ``imageData`` is not used). ``imageHeight`` / ``imageWidth`` are
  required and must agree with the image file.
- ``polygon`` shapes (>= 3 points) are masks; ``rectangle`` shapes (2 corner points, or 4
  points) are boxes. Other shape types (circle, line, point, linestrip, mask, ...) are dropped
  with a warning. A missing ``shape_type`` means polygon (LabelMe before 3.x).
- Shapes of one file with the same non-null ``group_id`` are one instance: its mask is the
  union of its polygons, its box the tight box around its polygons and rectangles. All shapes
  of a group must carry the same label. A shape with ``group_id: null`` is an instance alone.
- An instance made of rectangles only has a box and no mask: a rectangle-only folder is box
  supervision (fine for ``train``; a ``val`` split needs masks).
- ``"difficult": true`` on a shape makes its instance an ignore region (``iscrowd = 1``).
- Shapes labelled ``__ignore__`` or ``_background_`` (LabelMe's own conventions: a region to
  ignore, the background) are skipped, counted in the report as ``ignored_shapes``: never an
  instance, never a class. labelme2coco makes no annotation of ``__ignore__``; labelme2voc
  paints it void and ``_background_`` as value 0, no object. They are not kept as ``iscrowd``
  regions: a COCO ignore region belongs to one class and these name none (a shape of a class
  with ``"difficult": true`` is such a region).
- Class names: ``names`` (a list, builtin list or file: the class order; ``__ignore__`` and
  ``_background_`` in it, as in labelme's labels.txt, are left out), default the sorted labels
  found. A label not in ``names`` is an error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from boxcaseg.data.classes import LABELME_NON_CLASSES, categories_for, resolve_class_names
from boxcaseg.data.coco import WHERE, Coco, load_json_object, validate_coco
from boxcaseg.data.fields import describe, finite_number, flag01, image_side, polygon_problem
from boxcaseg.data.report import ValidationReport

SHAPE_TYPES = ("polygon", "rectangle")


def _points(points: Any) -> list[tuple[float, float]] | str:
    """``[[x, y], ...]`` as float pairs, or why not."""
    if not isinstance(points, list) or not points:
        return f"points must be a non-empty list of [x, y] pairs, got {describe(points)}"
    out = []
    for k, point in enumerate(points):
        if not (isinstance(point, list) and len(point) == 2):
            return f"point {k} must be an [x, y] pair, got {describe(point)}"
        x, y = finite_number(point[0]), finite_number(point[1])
        if x is None or y is None:
            return f"point {k} must hold two finite numbers, got {describe(point)}"
        out.append((x, y))
    return out


def _shape(shape: Any, width: int, height: int) -> dict[str, Any] | str:
    """One validated shape ``{label, type, points, group, difficult}``, or why it is unusable
    (a string; one starting with ``"drop: "`` is a warning)."""
    if not isinstance(shape, dict):
        return f"a shape must be an object {{label, points, shape_type}}, got {describe(shape)}"
    label = shape.get("label")
    if not isinstance(label, str) or not label.strip():
        return f"label must be a non-empty string, got {describe(label)}"
    shape_type = shape.get("shape_type")
    if shape_type is None:
        shape_type = "polygon"  # LabelMe before 3.x wrote no shape_type
    if not isinstance(shape_type, str):
        return f"shape_type must be a string, got {describe(shape_type)}"
    group = shape.get("group_id")
    if group is not None and type(group) is not int:
        return f"group_id must be an integer or null, got {describe(group)}"
    difficult = shape.get("difficult")
    if difficult is not None and flag01(difficult) is None:
        return f"difficult must be true or false, got {describe(difficult)}"
    if shape_type not in SHAPE_TYPES:
        return f"drop: a {shape_type!r} shape (only polygon and rectangle are used)"
    points = _points(shape.get("points"))
    if isinstance(points, str):
        return points
    flat = [v for point in points for v in point]
    if shape_type == "polygon":
        problem = polygon_problem(flat, width, height)
        if problem is not None:
            return problem
    else:
        if len(points) not in (2, 4):
            return f"a rectangle needs 2 corner points (or 4), got {len(points)}"
        problem = polygon_problem(flat + flat[:2], width, height)  # the same bounds as polygons
        if problem is not None:
            return problem.replace("polygon", "rectangle")
    return {
        "label": label.strip(),
        "type": shape_type,
        "points": flat,
        "group": group,
        "difficult": bool(difficult),
    }


def _instance_annotation(shapes: list[dict[str, Any]], width: int, height: int) -> dict[str, Any]:
    """One instance from its shapes: polygons -> mask (union), box around everything."""
    from pycocotools import mask as mask_utils

    polygons = [s["points"] for s in shapes if s["type"] == "polygon"]
    boxes = []
    ann: dict[str, Any] = {"iscrowd": int(any(s["difficult"] for s in shapes))}
    if polygons:
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        x, y, w, h = mask_utils.toBbox(rle).tolist()
        if w > 0 and h > 0:
            boxes.append((x, y, x + w, y + h))
        ann["segmentation"] = polygons
        ann["area"] = float(mask_utils.area(rle))
    for s in shapes:
        if s["type"] == "rectangle":
            xs, ys = s["points"][0::2], s["points"][1::2]
            boxes.append((min(xs), min(ys), max(xs), max(ys)))
    if boxes:
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        ann["bbox"] = [x0, y0, x1 - x0, y1 - y0]
    else:
        ann["bbox"] = [0.0, 0.0, 0.0, 0.0]  # a degenerate polygon: dropped by the validator
    if not polygons:
        ann["area"] = ann["bbox"][2] * ann["bbox"][3]
    return ann


def _read_file(
    path: Path, root: Path, report: ValidationReport
) -> tuple[dict[str, Any], list[tuple[str, list[dict[str, Any]]]]] | None:
    """One LabelMe file: its image entry and its instances ``(item, shapes)``, or None."""
    file = str(path)
    data = load_json_object(path, report, "a LabelMe file must hold a JSON object")
    if data is None:
        return None
    ok = True
    image_path = data.get("imagePath")
    if "imagePath" not in data:
        report.error(file, "imagePath", "missing (the image, relative to this file)")
        ok = False
    elif not isinstance(image_path, str) or not image_path.strip():
        report.error(file, "imagePath", f"must be a non-empty path, got {describe(image_path)}")
        ok = False
    sides = {}
    for key in ("imageWidth", "imageHeight"):
        sides[key] = image_side(data.get(key))
        if key not in data:
            report.error(file, key, "missing")
            ok = False
        elif sides[key] is None:
            report.error(file, key, f"must be a positive integer, got {describe(data.get(key))}")
            ok = False
    shapes = data.get("shapes")
    if "shapes" not in data:
        report.error(file, "shapes", "missing (the list of shapes)")
        ok = False
    elif not isinstance(shapes, list):
        report.error(file, "shapes", f"must be a list of shapes, got {describe(shapes)}")
        ok = False
    if not ok:
        return None
    width, height = sides["imageWidth"], sides["imageHeight"]
    groups: dict[Any, list[dict[str, Any]]] = {}
    items: dict[Any, str] = {}
    for k, raw in enumerate(shapes):
        label = raw.get("label") if isinstance(raw, dict) else None
        if isinstance(label, str) and label.strip() in LABELME_NON_CLASSES:
            # skipped before its points are checked: nothing of it is used
            report.counts["ignored_shapes"] += 1
            continue
        shape = _shape(raw, width, height)
        if isinstance(shape, str):
            if shape.startswith("drop: "):
                report.warn(file, f"shape {k}", shape.removeprefix("drop: "), "dropped")
            else:
                report.error(file, f"shape {k}", shape)  # the file's other shapes stay
            continue
        key = ("group", shape["group"]) if shape["group"] is not None else ("shape", k)
        groups.setdefault(key, []).append(shape)
        items.setdefault(
            key, f"group_id {shape['group']}" if shape["group"] is not None else f"shape {k}"
        )
    instances = []
    for key, members in groups.items():
        labels = sorted({s["label"] for s in members})
        if len(labels) > 1:
            report.error(file, items[key], f"joins shapes of different labels {labels}")
            continue
        instances.append((items[key], members))
    target = path.parent / image_path.strip().replace("\\", "/")
    image = {
        "file_name": os.path.relpath(target, root),
        "width": width,
        "height": height,
        WHERE: (file, f"imagePath of {path.name}"),
    }
    return image, instances


def import_labelme(
    root: str | Path, class_names: Any = None, *, strict: bool = False, decode_images: bool = True
) -> tuple[Coco, ValidationReport]:
    """A folder of LabelMe JSON files (see the module's docstring for the rules)."""
    root = Path(root)
    report = ValidationReport(source=f"{root} (LabelMe)", strict=strict)
    if not root.is_dir():
        report.error(str(root), "", "folder does not exist")
        report.raise_if_errors()
    files = sorted(root.glob("*.json"))
    if not files:
        report.error(str(root), "", "no LabelMe *.json file in this folder")
        report.raise_if_errors()
    parsed = []
    report.counts["ignored_shapes"] = 0  # labelled __ignore__ or _background_
    for path in files:
        result = _read_file(path, root, report)
        if result is not None:
            parsed.append((path, *result))
    found = sorted(
        {s["label"] for _, _, instances in parsed for _, shapes in instances for s in shapes}
    )
    names = resolve_class_names(class_names) if class_names is not None else found
    names = [n for n in names if n not in LABELME_NON_CLASSES]
    if not names:
        report.error(str(root), "", "no polygon or rectangle shape in any file")
        report.raise_if_errors()
    cat_ids = {n: i + 1 for i, n in enumerate(names)}
    coco: Coco = {"images": [], "annotations": [], "categories": categories_for(names)}
    n_box_only = 0
    for image_id, (path, image, instances) in enumerate(parsed, start=1):
        coco["images"].append({"id": image_id, **image})
        for item, shapes in instances:
            label = shapes[0]["label"]
            if label not in cat_ids:
                report.error(
                    str(path),
                    item,
                    f"unknown class name {label!r} (names: {', '.join(names[:30])})",
                )
                continue
            ann = _instance_annotation(shapes, image["width"], image["height"])
            n_box_only += "segmentation" not in ann
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": cat_ids[label],
                    **ann,
                    WHERE: (str(path), f"{item} ({label})"),
                }
            )
    report.counts["instances_without_mask"] = n_box_only
    clean = validate_coco(coco, root, report, source_file=str(root), decode_images=decode_images)
    return clean, report
