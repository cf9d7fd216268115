"""PASCAL VOC folders -> the internal COCO form (Stage 1 importer).

``Annotations/*.xml`` give the boxes, ``SegmentationObject/*.png``, where an image has one, its
instance masks (kept for evaluation only); a folder of PNGs alone is read by
:mod:`boxcaseg.data.instance_masks`. Returns
``(data, report)``; the caller decides when to raise (``report.raise_if_errors``), so one run
lists every problem of a dataset at once instead of stopping at the first.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from boxcaseg.data.classes import categories_for, resolve_class_names, voc_image_ids
from boxcaseg.data.coco import WHERE, Coco, validate_coco
from boxcaseg.data.fields import describe, finite_number, image_side
from boxcaseg.data.images import ImageProblem, load_label_map, mask_size_problem
from boxcaseg.data.instance_masks import import_voc_masks
from boxcaseg.data.report import ValidationReport
from boxcaseg.masks import rle_encode


def _xml_number(node: ET.Element, tag: str) -> float | str:
    """The finite number in ``<tag>``, or why there is none."""
    text = node.findtext(tag)
    if text is None:
        return f"no <{tag}>"
    try:
        value = float(text.strip())
    except ValueError:
        return f"<{tag}> is not a number: {describe(text.strip())}"
    if finite_number(value) is None:
        return f"<{tag}> is not a finite number: {text.strip()}"
    return value


def _voc_xml(
    xml_path: Path, report: ValidationReport
) -> tuple[str, int | None, int | None, list] | None:
    """``(filename, width, height, objects)`` of one VOC XML, or None when it cannot be
    parsed. Every problem names the XML file and the object (index and class name); a broken
    size is left to the image file (None), a broken object left out, both reported."""
    file = str(xml_path)
    try:
        node = ET.parse(xml_path).getroot()
    except ET.ParseError as err:
        report.error(file, "", f"corrupt XML ({err})")
        return None
    except OSError as err:
        report.error(file, "", f"cannot be read ({err})")
        return None
    filename = (node.findtext("filename") or "").strip() or f"{xml_path.stem}.jpg"
    size = node.find("size")
    sides: dict[str, int | None] = {"width": None, "height": None}
    if size is not None:
        for tag in sides:
            value = _xml_number(size, tag)
            sides[tag] = image_side(value) if not isinstance(value, str) else None
            if sides[tag] is None:
                report.error(
                    file,
                    "size",
                    value
                    if isinstance(value, str)
                    else f"<{tag}> must be a positive whole number, got {value:g}",
                )
    objects = []
    for k, obj in enumerate(node.findall("object")):
        name = (obj.findtext("name") or "").strip()
        item = f"object {k}" + (f" ({name})" if name else "")
        if not name:
            report.error(file, item, "object without a class <name>")
            continue
        bnd = obj.find("bndbox")
        if bnd is None:
            report.error(file, item, "object without <bndbox>")
            continue
        coords = [_xml_number(bnd, t) for t in ("xmin", "ymin", "xmax", "ymax")]
        problems = [c for c in coords if isinstance(c, str)]
        if problems:
            report.error(file, item, "bndbox: " + "; ".join(problems))
            continue
        difficult_text = (obj.findtext("difficult") or "0").strip() or "0"
        difficult = {"0": 0, "1": 1}.get(difficult_text)
        if difficult is None:
            report.error(file, item, f"<difficult> must be 0 or 1, got {describe(difficult_text)}")
            continue
        # VOC pixel indices are 1-based and inclusive: [xmin, xmax] covers xmax - xmin + 1 px.
        x0, y0, x1, y1 = coords
        objects.append(
            {
                "name": name,
                "item": item,
                "difficult": difficult,
                "bbox": [x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1],
            }
        )
    return filename, sides["width"], sides["height"], objects


def import_voc(
    root: str | Path,
    split: str | None = None,
    *,
    class_names: Any = None,
    strict: bool = False,
    decode_images: bool = True,
) -> tuple[Coco, ValidationReport]:
    """A PASCAL VOC folder: ``Annotations/*.xml`` boxes, ``JPEGImages``, and, when present,
    ``SegmentationObject/*.png`` instance masks (index k = k-th XML object, 255 = void).
    Difficult objects become ignore regions (``iscrowd = 1``). Class names: ``class_names``,
    default the 20 VOC classes.

    A folder without ``Annotations/`` but with ``SegmentationObject/`` + ``SegmentationClass/``
    PNGs (what labelme2voc writes) is read from the PNGs instead: see
    :func:`boxcaseg.data.instance_masks.import_voc_masks`."""
    root = Path(root)
    if not (root / "Annotations").is_dir():
        return import_voc_masks(
            root, split, class_names=class_names, strict=strict, decode_images=decode_images
        )
    report = ValidationReport(source=f"{root} (VOC{'/' + split if split else ''})", strict=strict)
    names = resolve_class_names("voc" if class_names is None else class_names)
    cat_ids = {n: i + 1 for i, n in enumerate(names)}
    coco: Coco = {"images": [], "annotations": [], "categories": categories_for(names)}
    seg_dir = root / "SegmentationObject"
    ann_id = 1
    for image_id, stem in enumerate(
        voc_image_ids(root, split, report, ("Annotations", ".xml")), start=1
    ):
        xml_path = root / "Annotations" / f"{stem}.xml"
        if not xml_path.is_file():
            report.error(str(xml_path), stem, "annotation file listed in the split is missing")
            continue
        parsed = _voc_xml(xml_path, report)
        if parsed is None:
            continue
        filename, width, height, objects = parsed
        coco["images"].append(
            {
                "id": image_id,
                "file_name": filename,
                "width": width,
                "height": height,
                WHERE: (str(xml_path), f"<filename> of {xml_path.name}"),
            }
        )
        obj_png = seg_dir / f"{stem}.png"
        instance_map = None
        if obj_png.is_file():
            try:
                instance_map, _ = load_label_map(obj_png)
            except ImageProblem as err:
                report.error(str(obj_png), stem, str(err))
            problem = (
                mask_size_problem(instance_map, width, height)
                if instance_map is not None and width is not None
                else None
            )
            if problem:
                report.error(str(obj_png), stem, problem)
                instance_map = None
        for k, obj in enumerate(objects):
            if obj["name"] not in cat_ids:
                report.error(
                    str(xml_path),
                    obj["item"],
                    f"unknown class name {obj['name']!r} (names: {', '.join(names[:30])})",
                )
                continue
            ann = {
                "id": ann_id,
                "image_id": image_id,
                "bbox": obj["bbox"],
                "category_id": cat_ids[obj["name"]],
                "iscrowd": obj["difficult"],
                WHERE: (str(xml_path), obj["item"]),
            }
            if instance_map is not None:
                mask = instance_map == k + 1
                if not mask.any():
                    report.warn(
                        str(obj_png),
                        obj["item"],
                        f"no pixel has the value {k + 1} of this object: its true mask is empty",
                        "kept",
                    )
                ann["segmentation"] = rle_encode(mask)
            coco["annotations"].append(ann)
            ann_id += 1
    clean = validate_coco(
        coco,
        root / "JPEGImages",
        report,
        source_file=str(root / "Annotations"),
        decode_images=decode_images,
    )
    return clean, report
