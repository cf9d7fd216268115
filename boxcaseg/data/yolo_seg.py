"""YOLO segmentation folders -> the internal COCO form (Stage 1 importer).

One ``<stem>.txt`` per image, one instance per line, ``class x1 y1 x2 y2 ...`` normalised to
[0, 1]. Returns ``(data, report)``; the caller decides when to raise
(``report.raise_if_errors``), so one run lists every problem of a dataset at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from boxcaseg.data.classes import categories_for, resolve_class_names
from boxcaseg.data.coco import WHERE, Coco, validate_coco
from boxcaseg.data.fields import finite_number
from boxcaseg.data.images import ImageProblem, exif_orientation, image_size, list_images
from boxcaseg.data.report import ValidationReport


def _parse_yolo_line(
    line: str,
    file: str,
    lineno: int,
    n_classes: int,
    width: int,
    height: int,
    report: ValidationReport,
) -> tuple[int, list[float]] | None:
    parts = line.split()
    item = f"line {lineno}"
    try:
        cls = int(parts[0])
        coords = [float(v) for v in parts[1:]]
    except ValueError:
        report.error(file, item, f"not 'class x1 y1 x2 y2 ...' numbers: {line[:60]!r}")
        return None
    bad = next((v for v, c in zip(parts[1:], coords) if finite_number(c) is None), None)
    if bad is not None:
        report.error(file, item, f"coordinate {bad!r} is not a finite number")
        return None
    if not 0 <= cls < n_classes:
        report.error(file, item, f"unknown category {cls} (names list has {n_classes} classes)")
        return None
    if len(coords) < 6 or len(coords) % 2:
        report.error(
            file, item, f"a polygon needs an even number (>= 6) of coordinates, got {len(coords)}"
        )
        return None
    xy = np.asarray(coords).reshape(-1, 2)
    if (xy < 0).any() or (xy > 1).any():
        report.warn(file, item, "normalised coordinates outside [0, 1]", "clipped")
        xy = xy.clip(0, 1)
    xy = xy * np.array([width, height])
    return cls, xy.reshape(-1).tolist()


def import_yolo_seg(
    image_dir: str | Path,
    label_dir: str | Path,
    class_names: Any,
    *,
    strict: bool = False,
    decode_images: bool = True,
) -> tuple[Coco, ValidationReport]:
    """A YOLO segmentation folder pair: one ``<stem>.txt`` per image, one instance per line,
    ``class x1 y1 x2 y2 ...`` normalised to [0, 1]; class ids index ``class_names``.
    Boxes are the tight boxes of the rasterised polygons."""
    from pycocotools import mask as mask_utils

    image_dir, label_dir = Path(image_dir), Path(label_dir)
    report = ValidationReport(source=f"{label_dir} (YOLO-seg)", strict=strict)
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            report.error(str(folder), "", "folder does not exist")
    report.raise_if_errors()
    names = resolve_class_names(class_names)
    images = list_images(image_dir)
    labels = {p.stem: p for p in sorted(label_dir.glob("*.txt"))}
    for stem in sorted(set(labels) - set(images)):
        report.warn(str(labels[stem]), stem, "label file without an image", "dropped")
    coco: Coco = {"images": [], "annotations": [], "categories": categories_for(names)}
    ann_id = 1
    for image_id, (stem, path) in enumerate(sorted(images.items()), start=1):
        try:
            width, height = image_size(path, decode=decode_images)
        except ImageProblem as err:
            report.error(str(path), stem, str(err))
            continue
        orientation = exif_orientation(path)
        if orientation != 1 and stem in labels:
            # YOLO labels are normalised to the SHOWN view (the tag applied), pixels here are
            # read as stored: the two disagree, so the image is refused rather than misread
            report.error(
                str(path),
                stem,
                f"EXIF orientation tag {orientation}: YOLO labels "
                "describe the rotated view, BoxCaseg reads pixels as stored; rotate the "
                "file once (e.g. PIL.ImageOps.exif_transpose) and drop the tag",
            )
            continue
        coco["images"].append(
            {"id": image_id, "file_name": path.name, "width": width, "height": height}
        )
        label_file = labels.get(stem)
        if label_file is None:
            continue  # an image with no objects: kept (a negative for evaluation)
        try:
            lines = label_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            report.error(str(label_file), stem, f"cannot read this label file as text ({err})")
            continue
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parsed = _parse_yolo_line(
                line, str(label_file), lineno, len(names), width, height, report
            )
            if parsed is None:
                continue
            cls, polygon = parsed
            rle = mask_utils.frPyObjects([polygon], height, width)[0]
            box = mask_utils.toBbox(rle).tolist()
            coco["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": cls + 1,
                    "bbox": box,
                    "segmentation": [polygon],
                    "area": float(mask_utils.area(rle)),
                    "iscrowd": 0,
                    WHERE: (str(label_file), f"line {lineno}"),
                }
            )
            ann_id += 1
    clean = validate_coco(
        coco, image_dir, report, source_file=str(label_dir), decode_images=False
    )  # decoded above already
    return clean, report
