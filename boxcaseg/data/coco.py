"""The internal dataset form: a COCO instances dict, validated.

Every importer produces one of these. Conventions on top of COCO:
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
from pathlib import Path
from typing import Any

from boxcaseg.data.images import ImageProblem, image_size
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
    finally:
        if enabled:
            gc.enable()


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
                yield (", " if start else "") + json.dumps(value[start:start + _JSON_CHUNK])[1:-1]
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


def has_masks(coco: Coco) -> bool:
    """True when every non-crowd annotation carries a segmentation."""
    anns = [a for a in coco["annotations"] if not a.get("iscrowd", 0)]
    return bool(anns) and all(a.get("segmentation") for a in anns)


def strip_masks(coco: Coco) -> Coco:
    """The box-only copy that training sees: no ``segmentation`` key anywhere."""
    out = {k: copy.deepcopy(v) for k, v in coco.items() if k != "annotations"}
    out["annotations"] = [{k: v for k, v in a.items() if k != "segmentation"}
                          for a in coco["annotations"]]
    out.setdefault("info", {})["masks"] = "stripped: box supervision only"
    return out


def category_names(coco: Coco) -> list[str]:
    return [c["name"] for c in sorted(coco["categories"], key=lambda c: c["id"])]


def _check_box(report: ValidationReport, file: str, item: str, bbox: Any,
               width: int, height: int) -> list[float] | None:
    """A validated, clipped box, or None when the annotation must go."""
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4):
        report.error(file, item, f"bbox must be [x, y, w, h], got {bbox!r}")
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        report.warn(file, item, f"zero or negative area box {[x, y, w, h]}", "dropped")
        return None
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        report.error(file, item, f"box {[x, y, w, h]} lies fully outside the {width}x{height} image")
        return None
    if (x0, y0, x1, y1) != (x, y, x + w, y + h):
        report.warn(file, item, f"box {[x, y, w, h]} partly outside the {width}x{height} image",
                    "clipped")
    return [x0, y0, x1 - x0, y1 - y0]


def validate_coco(coco: Coco, root: str | Path, report: ValidationReport, *,
                  source_file: str, decode_images: bool = True) -> Coco:
    """Check a COCO dict against its image folder; return the cleaned copy.

    Errors (duplicate ids, unknown image or category, missing/corrupt image, size mismatch,
    box fully outside, empty split) are collected and raised together by the caller through
    ``report.raise_if_errors()``; warnings (box partly outside: clipped; zero-area box:
    dropped) are applied and recorded.
    """
    root = Path(root).resolve()
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            report.error(source_file, "", f"missing or malformed '{key}' list")
    if report.errors:
        return coco

    categories = {}
    for cat in coco["categories"]:
        if cat["id"] in categories:
            report.error(source_file, f"category {cat['id']}", "duplicate category id")
        categories[cat["id"]] = cat
    images: dict[Any, dict[str, Any]] = {}
    for img in coco["images"]:
        item = f"image {img.get('id')}"
        if img.get("id") in images:
            report.error(source_file, item, "duplicate image id")
            continue
        path = root / str(img.get("file_name", ""))
        try:
            width, height = image_size(path, decode=decode_images)
        except ImageProblem as err:
            report.error(str(path), item, str(err))
            continue
        if img.get("width") not in (None, width) or img.get("height") not in (None, height):
            report.error(str(path), item, f"annotation says {img.get('width')}x{img.get('height')}"
                         f" but the file is {width}x{height}")
            continue
        images[img["id"]] = {**img, "width": width, "height": height}

    listed_image_ids = {img.get("id") for img in coco["images"]}
    seen_ann_ids: set[Any] = set()
    annotations = []
    for ann in coco["annotations"]:
        item = f"annotation {ann.get('id')} of image {ann.get('image_id')}"
        if ann.get("id") in seen_ann_ids:
            report.error(source_file, item, "duplicate annotation id")
            continue
        seen_ann_ids.add(ann.get("id"))
        if ann.get("category_id") not in categories:
            report.error(source_file, item, f"unknown category id {ann.get('category_id')} "
                         f"(known: {sorted(categories)})")
            continue
        img = images.get(ann.get("image_id"))
        if img is None:
            if ann.get("image_id") not in listed_image_ids:
                report.error(source_file, item, "refers to an image id not in 'images'")
            continue  # the image itself already produced an error
        box = _check_box(report, source_file, item, ann.get("bbox"), img["width"], img["height"])
        if box is None:
            continue
        clean = {**ann, "bbox": box, "iscrowd": int(ann.get("iscrowd", 0))}
        clean["area"] = float(ann.get("area") or box[2] * box[3])
        annotations.append(clean)

    if not images:
        report.error(source_file, "", "empty split: no usable images")
    elif not any(not a["iscrowd"] for a in annotations):
        report.error(source_file, "", "empty split: no usable box annotations")
    per_category = Counter(categories[a["category_id"]]["name"] for a in annotations
                           if not a["iscrowd"])
    report.counts.update({
        "images": len(images),
        "annotations": len(annotations),
        "crowd_or_ignored": sum(a["iscrowd"] for a in annotations),
        "images_without_boxes": len(set(images) - {a["image_id"] for a in annotations}),
        "per_category": dict(sorted(per_category.items())),
    })
    info = {**coco.get("info", {}), "image_root": str(root)}
    return {"info": info, "images": list(images.values()), "annotations": annotations,
            "categories": sorted(categories.values(), key=lambda c: c["id"])}
