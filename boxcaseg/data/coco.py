"""The internal dataset form: a COCO instances dict, validated; and the COCO importer
(:func:`import_coco`), which is that validation applied to a COCO file.

Every importer (one module per format: here, voc, yolo_seg, instance_masks, labelme, salient)
produces one of these. Conventions on top of COCO:
- ``images[].file_name`` is relative to ``info.image_root`` (an absolute path), so the files
  written by Stage 1 can be read from anywhere; :func:`image_path` joins them.
- ``iscrowd = 1`` marks regions to ignore (COCO crowds, VOC "difficult"); they carry a box and
  are never given a proxy mask target.
- a box-only file has no ``segmentation`` key at all (:func:`strip_masks`).
"""

from __future__ import annotations

import copy
import gc
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from boxcaseg.data.fields import (
    describe,
    finite_number,
    flag01,
    image_side,
    segmentation_problem,
    valid_id,
)
from boxcaseg.data.images import ImageProblem, image_size, orientation_hint
from boxcaseg.data.report import DataError, ValidationReport

Coco = dict[str, Any]


def load_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    # JSON holds no reference cycles: the cyclic garbage collector, which would otherwise scan
    # the growing tree again and again (a COCO file is ~10M objects), is paused while it loads
    enabled = gc.isenabled()
    gc.disable()
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from err
    except RecursionError as err:
        raise DataError(f"{path}: JSON nested too deeply to be an annotation file") from err
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from err
    finally:
        if enabled:
            gc.enable()


def load_json_object(path: Path, report: ValidationReport, expected: str) -> dict[str, Any] | None:
    """A JSON file that must hold one object; its problems go to ``report`` (naming the file),
    and None comes back. ``expected`` says what the object should be, for the message."""
    try:
        data = load_json(path)
    except DataError as err:
        report.error(str(path), "", str(err).removeprefix(f"{path}: "))
        return None
    if not isinstance(data, dict):
        report.error(str(path), "", f"{expected}, got {describe(data)}")
        return None
    return data


_JSON_CHUNK = 20_000  # list items encoded per json.dumps call when streaming a large file


def _json_chunks(obj: Any) -> Any:
    """``json.dump(obj)``'s text (default separators), in pieces: a top-level dict's long lists
    are encoded a slice at a time by the C encoder (``json.dump`` to a file uses the pure
    Python one, 3x slower), so a COCO-sized file needs neither minutes nor a second copy of
    itself as one string."""
    if not (isinstance(obj, dict) and all(isinstance(k, str) for k in obj)):
        yield json.dumps(obj)
        return
    yield "{"
    for n, (key, value) in enumerate(obj.items()):
        yield (", " if n else "") + json.dumps(key) + ": "
        if isinstance(value, list) and len(value) > _JSON_CHUNK:
            yield "["
            for start in range(0, len(value), _JSON_CHUNK):
                yield (", " if start else "") + json.dumps(value[start : start + _JSON_CHUNK])[1:-1]
            yield "]"
        else:
            yield json.dumps(value)
    yield "}"


def save_json(obj: Any, path: str | Path, *, indent: int | None = None) -> None:
    """Write JSON atomically (temp file + rename): a crash never leaves half a file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if indent is None:
                for piece in _json_chunks(obj):
                    fh.write(piece)
            else:
                json.dump(obj, fh, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def image_root(coco: Coco) -> Path:
    root = coco.get("info", {}).get("image_root")
    if not root:
        raise DataError("dataset has no info.image_root: it was not written by `boxcaseg prepare`")
    return Path(root)


def image_path(coco: Coco, image: dict[str, Any]) -> Path:
    return image_root(coco) / image["file_name"]


def annotations_by_image(
    annotations: Iterable[dict[str, Any]], *, skip_crowd: bool = False
) -> dict[Any, list[dict[str, Any]]]:
    """Annotations grouped by ``image_id`` in one pass, each group in file order;
    ``skip_crowd`` leaves crowd / ignore regions (``iscrowd``) out."""
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for ann in annotations:
        if not (skip_crowd and ann.get("iscrowd", 0)):
            by_image.setdefault(ann["image_id"], []).append(ann)
    return by_image


def has_masks(coco: Coco) -> bool:
    """True when every non-crowd annotation carries a segmentation."""
    anns = [a for a in coco["annotations"] if not a.get("iscrowd", 0)]
    return bool(anns) and all(a.get("segmentation") for a in anns)


def strip_masks(coco: Coco) -> Coco:
    """The box-only copy that training sees: no ``segmentation`` key anywhere."""
    out = {k: copy.deepcopy(v) for k, v in coco.items() if k != "annotations"}
    out["annotations"] = [
        {k: v for k, v in a.items() if k != "segmentation"} for a in coco["annotations"]
    ]
    out.setdefault("info", {})["masks"] = "stripped: box supervision only"
    return out


def category_names(coco: Coco) -> list[str]:
    return [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]


WHERE = "_where"  # an importer's (file, item) for an image or annotation: where its messages point


def _where(entry: dict[str, Any], file: str, item: str) -> tuple[str, str]:
    where = entry.get(WHERE)
    return (str(where[0]), str(where[1])) if where else (file, item)


def _check_box(
    report: ValidationReport, file: str, item: str, bbox: Any, width: int, height: int
) -> list[float] | None:
    """A validated, clipped box, or None when the annotation must go."""
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
        report.error(file, item, f"bbox must be [x, y, w, h], got {describe(bbox)}")
        return None
    values = [finite_number(v) for v in bbox]
    if any(v is None for v in values):
        report.error(file, item, f"bbox values must be finite numbers, got {describe(bbox)}")
        return None
    x, y, w, h = values
    if w <= 0 or h <= 0:
        report.warn(file, item, f"zero or negative area box {[x, y, w, h]}", "dropped")
        return None
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        report.error(
            file, item, f"box {[x, y, w, h]} lies fully outside the {width}x{height} image"
        )
        return None
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        report.warn(
            file, item, f"box {[x, y, w, h]} partly outside the {width}x{height} image", "clipped"
        )
    return [x0, y0, x1 - x0, y1 - y0]


def _check_categories(
    coco: Coco, report: ValidationReport, source_file: str
) -> dict[int, dict[str, Any]]:
    categories: dict[int, dict[str, Any]] = {}
    names: set[str] = set()
    for k, cat in enumerate(coco["categories"]):
        if not isinstance(cat, dict):
            report.error(
                source_file,
                f"categories[{k}]",
                f"a category must be an object {{id, name}}, got {describe(cat)}",
            )
            continue
        cat_id, name = valid_id(cat.get("id")), cat.get("name")
        item = f"category {describe(cat.get('id'))}"
        if cat_id is None:
            report.error(
                source_file,
                f"categories[{k}]",
                f"category id must be a non-negative integer, got {describe(cat.get('id'))}",
            )
        elif cat_id in categories:
            report.error(source_file, item, "duplicate category id")
        elif not isinstance(name, str) or not name.strip():
            report.error(
                source_file, item, f"category name must be a non-empty string, got {describe(name)}"
            )
        elif name in names:
            report.error(source_file, item, f"duplicate category name {name!r}")
        else:
            names.add(name)
            categories[cat_id] = {k2: v for k2, v in cat.items() if k2 != WHERE}
    return categories


def _check_images(
    coco: Coco, root: Path, report: ValidationReport, source_file: str, decode_images: bool
) -> tuple[dict[int, dict[str, Any]], set[Any]]:
    """Usable images by id, and every id listed (usable or not)."""
    images: dict[int, dict[str, Any]] = {}
    listed: set[Any] = set()
    for k, img in enumerate(coco["images"]):
        if not isinstance(img, dict):
            report.error(
                source_file,
                f"images[{k}]",
                f"an image must be an object {{id, file_name, ...}}, got {describe(img)}",
            )
            continue
        image_id = valid_id(img.get("id"))
        file, item = _where(img, source_file, f"image {describe(img.get('id'))}")
        if image_id is None:
            report.error(
                file,
                f"images[{k}]",
                f"image id must be a non-negative integer, got {describe(img.get('id'))}",
            )
            continue
        if image_id in listed:
            report.error(file, item, "duplicate image id")
            continue
        listed.add(image_id)
        file_name = img.get("file_name")
        if not isinstance(file_name, str) or not file_name.strip():
            report.error(
                file, item, f"file_name must be a non-empty string, got {describe(file_name)}"
            )
            continue
        declared = {}
        for key in ("width", "height"):
            if img.get(key) is None:
                continue
            declared[key] = image_side(img[key])
            if declared[key] is None:
                report.error(
                    file, item, f"image {key} must be a positive integer, got {describe(img[key])}"
                )
        if None in declared.values():
            continue
        path = root / file_name
        try:
            width, height = image_size(path, decode=decode_images)
        except ImageProblem as err:
            report.error(str(path), item, str(err))
            continue
        if declared.get("width", width) != width or declared.get("height", height) != height:
            said = f"{img.get('width')}x{img.get('height')}"
            hint = orientation_hint(
                path,
                (declared.get("width", width), declared.get("height", height)),
                (width, height),
            )
            if WHERE in img:  # the annotation file made the claim: name it, and the image
                report.error(
                    file, item, f"annotation says {said} but {file_name} is {width}x{height}{hint}"
                )
            else:
                report.error(
                    str(path),
                    item,
                    f"annotation says {said} but the file is {width}x{height}{hint}",
                )
            continue
        images[image_id] = {
            **{k2: v for k2, v in img.items() if k2 != WHERE},
            "id": image_id,
            "file_name": file_name,
            "width": width,
            "height": height,
        }
    return images, listed


def _check_annotation(
    ann: dict[str, Any], img: dict[str, Any], report: ValidationReport, file: str, item: str
) -> dict[str, Any] | None:
    """One annotation of a usable image and a known category: cleaned, or None."""
    width, height = img["width"], img["height"]
    iscrowd = flag01(ann.get("iscrowd", 0))
    if iscrowd is None:
        report.error(file, item, f"iscrowd must be 0 or 1, got {describe(ann.get('iscrowd'))}")
        return None
    box = _check_box(report, file, item, ann.get("bbox"), width, height)
    if box is None:
        return None
    clean = {k: v for k, v in ann.items() if k != WHERE}
    clean.update(bbox=box, iscrowd=iscrowd)
    area = ann.get("area")
    if area is not None:
        value = finite_number(area)
        if value is None or value < 0:
            report.error(file, item, f"area must be a non-negative number, got {describe(area)}")
            return None
        if value > width * height:
            report.warn(
                file,
                item,
                f"area {value:g} exceeds the {width}x{height} image",
                "replaced by the box area",
            )
            area = None
    clean["area"] = float(area or box[2] * box[3])
    segmentation = ann.get("segmentation")
    if segmentation is None or segmentation == []:
        clean.pop("segmentation", None)  # box only: no mask for this annotation
    else:
        problem = segmentation_problem(segmentation, width, height)
        if problem is not None:
            report.error(file, item, problem)
            return None
    return clean


def validate_coco(
    coco: Coco,
    root: str | Path,
    report: ValidationReport,
    *,
    source_file: str,
    decode_images: bool = True,
) -> Coco:
    """Check a COCO dict against its image folder; return the cleaned copy.

    Every field is checked for type and value: ids (non-negative integers), names (non-empty
    strings), image sizes (positive integers agreeing with the file), boxes (four finite
    numbers), ``iscrowd`` (0/1), ``area`` (a non-negative number), segmentations (polygons of
    >= 3 finite points near the image, or RLE of the image's size whose runs cover it exactly;
    ``null`` or ``[]`` mean box only). Errors (these, duplicate ids, unknown image or category,
    missing/corrupt image, size mismatch, box fully outside, empty split) are collected and
    raised together by the caller through ``report.raise_if_errors()``; warnings (box partly
    outside: clipped; zero-area box: dropped; area larger than the image: replaced) are applied
    and recorded. An importer may give an image or annotation ``_where: (file, item)``: its
    messages then name that file and item (a VOC XML and its object, a LabelMe JSON and its
    shape) instead of ``source_file``; the key is not kept.
    """
    root = Path(root).resolve()
    errors_before = len(report.errors)  # an importer's own findings come before ours
    if not isinstance(coco, dict):
        report.error(source_file, "", f"a COCO dataset must be a JSON object, got {describe(coco)}")
        return {"info": {}, "images": [], "annotations": [], "categories": []}
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            report.error(
                source_file,
                "",
                f"missing or malformed '{key}' list (got {describe(coco.get(key))})",
            )
    info = coco.get("info", {})
    if info is None:
        info = {}
    if not isinstance(info, dict):
        report.error(source_file, "info", f"'info' must be an object, got {describe(info)}")
    if len(report.errors) > errors_before:
        return {"info": {}, "images": [], "annotations": [], "categories": []}

    categories = _check_categories(coco, report, source_file)
    images, listed_image_ids = _check_images(coco, root, report, source_file, decode_images)
    seen_ann_ids: set[int] = set()
    annotations = []
    for k, ann in enumerate(coco["annotations"]):
        if not isinstance(ann, dict):
            report.error(
                source_file,
                f"annotations[{k}]",
                "an annotation must be an object "
                f"{{id, image_id, category_id, bbox, ...}}, got {describe(ann)}",
            )
            continue
        file, item = _where(
            ann,
            source_file,
            f"annotation {describe(ann.get('id'))} of image {describe(ann.get('image_id'))}",
        )
        ann_id, image_id = valid_id(ann.get("id")), valid_id(ann.get("image_id"))
        category_id = valid_id(ann.get("category_id"))
        if ann_id is None:
            report.error(
                file,
                item,
                f"annotation id must be a non-negative integer, got {describe(ann.get('id'))}",
            )
            continue
        if ann_id in seen_ann_ids:
            report.error(file, item, "duplicate annotation id")
            continue
        seen_ann_ids.add(ann_id)
        if image_id is None:
            report.error(
                file,
                item,
                f"image_id must be a non-negative integer, got {describe(ann.get('image_id'))}",
            )
            continue
        if category_id not in categories:
            report.error(
                file,
                item,
                f"unknown category id {describe(ann.get('category_id'))} "
                f"(known: {sorted(categories)})",
            )
            continue
        img = images.get(image_id)
        if img is None:
            if image_id not in listed_image_ids:
                report.error(file, item, "refers to an image id not in 'images'")
            continue  # the image itself already produced an error
        clean = _check_annotation(ann, img, report, file, item)
        if clean is not None:
            annotations.append(clean)

    if report.errors:
        pass  # an empty split would only be a consequence of the problems listed
    elif not images:
        report.error(source_file, "", "empty split: no usable images")
    elif not any(not a["iscrowd"] for a in annotations):
        report.error(source_file, "", "empty split: no usable box annotations")
    per_category = Counter(
        categories[a["category_id"]]["name"] for a in annotations if not a["iscrowd"]
    )
    report.counts.update(
        {
            "images": len(images),
            "annotations": len(annotations),
            "crowd_or_ignored": sum(a["iscrowd"] for a in annotations),
            "images_without_boxes": len(set(images) - {a["image_id"] for a in annotations}),
            "per_category": dict(sorted(per_category.items())),
        }
    )
    info = {**info, "image_root": str(root)}
    return {
        "info": info,
        "images": list(images.values()),
        "annotations": annotations,
        "categories": sorted(categories.values(), key=lambda c: c["id"]),
    }


# --- the COCO importer (Stage 1): a COCO instances JSON, validated as it is ---------------


def import_coco(
    annotation_file: str | Path,
    image_dir: str | Path,
    *,
    strict: bool = False,
    decode_images: bool = True,
) -> tuple[Coco, ValidationReport]:
    """A COCO instances JSON (also SBD/VOC converted to COCO style). Polygons and RLE masks are
    kept for evaluation; crowd regions stay as ``iscrowd`` ignore regions."""
    report = ValidationReport(source=str(annotation_file), strict=strict)
    coco = load_json(annotation_file)
    if not isinstance(coco, dict):
        raise DataError(f"{annotation_file}: a COCO file must hold a JSON object")
    clean = validate_coco(
        coco, image_dir, report, source_file=str(annotation_file), decode_images=decode_images
    )
    return clean, report
