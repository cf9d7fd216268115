"""Importers: COCO JSON, PASCAL VOC folders, YOLO-seg folders -> the internal COCO form;
image + mask folders (DUTS layout) -> a salient index.

Each returns ``(data, report)``; the caller decides when to raise (``report.raise_if_errors``),
so one run lists every problem of a dataset at once instead of stopping at the first.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from boxcaseg.data.classes import categories_for, resolve_class_names, voc_image_ids
from boxcaseg.data.coco import WHERE, Coco, load_json, validate_coco
from boxcaseg.data.fields import describe, finite_number, image_side
from boxcaseg.data.images import (
    IMAGE_SUFFIXES,
    ImageProblem,
    binarize_mask,
    exif_orientation,
    image_size,
    is_binary,
    list_images,
    load_gray,
    load_label_map,
)
from boxcaseg.data.instance_masks import import_voc_masks
from boxcaseg.data.report import DataError, ValidationReport
from boxcaseg.masks import mask_to_box, rle_encode

# --- COCO -----------------------------------------------------------------------------------


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


# --- PASCAL VOC -------------------------------------------------------------------------------


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
            if (
                instance_map is not None
                and width is not None
                and instance_map.shape != (height, width)
            ):
                report.error(
                    str(obj_png),
                    stem,
                    f"mask is {instance_map.shape[1]}x"
                    f"{instance_map.shape[0]} but the image is {width}x{height}",
                )
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


# --- YOLO-seg ---------------------------------------------------------------------------------


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


# --- salient sets (image + mask folders, DUTS layout) -------------------------------------------

DUTS_FOLDERS = (("DUTS-TR-Image", "DUTS-TR-Mask"), ("DUTS-TE-Image", "DUTS-TE-Mask"))


def find_duts_folders(root: str | Path) -> tuple[Path, Path]:
    root = Path(root)
    for image_sub, mask_sub in DUTS_FOLDERS:
        if (root / image_sub).is_dir() and (root / mask_sub).is_dir():
            return root / image_sub, root / mask_sub
    raise DataError(
        f"{root}: no DUTS layout here (expected "
        + " or ".join(f"{a}/ + {b}/" for a, b in DUTS_FOLDERS)
        + ")"
    )


def import_salient(
    image_dir: str | Path, mask_dir: str | Path, *, strict: bool = False, decode_images: bool = True
) -> tuple[dict[str, Any], ValidationReport]:
    """Pair images and masks by file stem. Masks are binarised at half their scale (0/1 or
    0/255); a non-binary mask is binarised with a warning, an empty one dropped."""
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    report = ValidationReport(source=f"{image_dir} + {mask_dir} (salient)", strict=strict)
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            report.error(str(folder), "", "folder does not exist")
    report.raise_if_errors()
    images, masks = list_images(image_dir), list_images(mask_dir)
    # an empty folder is named: it is the one the user must fill or point elsewhere
    for folder, found, what in ((image_dir, images, "images"), (mask_dir, masks, "masks")):
        if not found:
            report.error(
                str(folder),
                "",
                f"the {what} folder holds no image file ({', '.join(IMAGE_SUFFIXES)})",
            )
    report.raise_if_errors()
    for stem in sorted(set(masks) - set(images)):
        report.warn(str(masks[stem]), stem, "mask without an image", "dropped")
    entries = []
    n_nonbinary = 0
    for stem, path in sorted(images.items()):
        mask_path = masks.get(stem)
        if mask_path is None:
            report.warn(str(path), stem, "salient image with no mask", "dropped")
            continue
        try:
            width, height = image_size(path, decode=decode_images)
        except ImageProblem as err:
            report.error(str(path), stem, str(err))
            continue
        try:
            values = load_gray(mask_path)
        except OSError as err:
            report.error(str(mask_path), stem, f"corrupt or unreadable mask ({err})")
            continue
        if values.shape != (height, width):
            report.error(
                str(mask_path),
                stem,
                f"mask is {values.shape[1]}x{values.shape[0]} but the image is {width}x{height}",
            )
            continue
        if not is_binary(values):
            n_nonbinary += 1
            report.warn(
                str(mask_path),
                stem,
                f"non-binary mask (values {sorted(np.unique(values).tolist())[:6]}...)",
                "binarised",
            )
        mask = binarize_mask(values)
        if not mask.any():
            report.warn(str(mask_path), stem, "empty mask (no foreground pixel)", "dropped")
            continue
        entries.append(
            {
                "id": len(entries) + 1,
                "image": str(path.resolve()),
                "mask": str(mask_path.resolve()),
                "width": width,
                "height": height,
                "bbox": mask_to_box(mask).tolist(),
            }
        )
    if not entries:
        report.error(str(image_dir), "", "empty salient set: no usable image + mask pair")
    report.counts.update(
        {
            "pairs": len(entries),
            "images_seen": len(images),
            "masks_seen": len(masks),
            "non_binary_masks": n_nonbinary,
        }
    )
    return {"salient": entries}, report


def import_duts(root: str | Path, **kwargs: Any) -> tuple[dict[str, Any], ValidationReport]:
    image_dir, mask_dir = find_duts_folders(root)
    return import_salient(image_dir, mask_dir, **kwargs)
