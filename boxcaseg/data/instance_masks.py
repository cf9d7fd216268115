"""Importers for instance-id PNGs: ``instance_png`` folders and VOC folders without XML.

An instance map is a one-channel PNG the size of its image whose pixel value is the instance
id: 0 is background, every other value one instance (ids need not be consecutive). In 8-bit
maps (gray, palette or 1-bit) 255 is VOC's "void" border and ignored, as in
``SegmentationObject``; in 16- and 32-bit maps every non-zero value is an instance (cell and
video datasets with more than 254 instances per image). Boxes are the tight boxes of the
instance masks; the masks are kept as ``segmentation`` (RLE) for evaluation.

An instance's class comes from one of
- one class for all (``classes: NAME``, or no ``classes`` at all: ``object``);
- a class-id PNG per image (``classes: DIR``, as VOC's ``SegmentationClass``): the class value
  under the instance's pixels, value v meaning ``names[v - 1]`` (0 background, 8-bit 255 void);
- a side file (``classes: FILE.json`` or ``FILE.csv``) naming each instance's class:
  JSON ``{"<image stem>": {"<instance id>": "<class name>", ...}, ...}`` or CSV with the
  header ``image,instance,class`` and one row per instance.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from boxcaseg.data.classes import (
    LABELME_NON_CLASSES,
    categories_for,
    resolve_class_names,
    voc_image_ids,
)
from boxcaseg.data.coco import WHERE, Coco, load_json_object, validate_coco
from boxcaseg.data.fields import describe
from boxcaseg.data.images import (
    ImageProblem,
    image_size,
    list_images,
    load_label_map,
    mask_size_problem,
)
from boxcaseg.data.report import DataError, ValidationReport
from boxcaseg.masks import mask_to_box, rle_encode

VOID = 255  # in 8-bit maps: VOC's void border, neither background nor an instance
DEFAULT_CLASS = "object"

# A class source: given an image stem, the instance ids found and the instance map, a class
# name per instance id; instances it cannot name are reported by it and left out.
ClassLookup = Callable[[str, list[int], np.ndarray], dict[int, str]]


def _instance_ids(values: np.ndarray, bits: int) -> list[int]:
    ids = np.unique(values)
    ids = ids[ids != 0]
    if bits == 8:
        ids = ids[ids != VOID]
    return [int(i) for i in ids]


def _instances(
    stem: str,
    image_id: int,
    mask_path: Path,
    classes: dict[int, str],
    cat_ids: dict[str, int],
    values: np.ndarray,
    ids: list[int],
    report: ValidationReport,
    class_file: str,
    first_ann_id: int,
) -> list[dict[str, Any]]:
    """The annotations of one instance map: one per instance id with a known class."""
    anns = []
    for instance in ids:
        name = classes.get(instance)
        item = f"{stem} instance {instance}"
        if name is None:
            continue  # the class lookup reported it
        if name not in cat_ids:
            report.error(
                class_file,
                item,
                f"unknown class name {name!r} (names: {', '.join(list(cat_ids)[:30])})",
            )
            continue
        mask = values == instance
        anns.append(
            {
                "id": first_ann_id + len(anns),
                "image_id": image_id,
                "category_id": cat_ids[name],
                "bbox": mask_to_box(mask).tolist(),
                "area": float(mask.sum()),
                "iscrowd": 0,
                "segmentation": rle_encode(mask),
                WHERE: (str(mask_path), f"instance {instance}"),
            }
        )
    return anns


def _import_maps(
    pairs: list[tuple[str, Path, Path]],
    image_root: Path,
    names: list[str],
    lookup: ClassLookup,
    class_file: Callable[[str], str],
    report: ValidationReport,
    decode_images: bool,
) -> Coco:
    """Images + instance maps (``(stem, image, map)`` triples) -> COCO annotations."""
    cat_ids = {n: i + 1 for i, n in enumerate(names)}
    coco: Coco = {"images": [], "annotations": [], "categories": categories_for(names)}
    n_void_only = 0
    for image_id, (stem, image_path, mask_path) in enumerate(pairs, start=1):
        try:
            width, height = image_size(image_path, decode=decode_images)
        except ImageProblem as err:
            report.error(str(image_path), stem, str(err))
            continue
        try:
            values, bits = load_label_map(mask_path)
        except ImageProblem as err:
            report.error(str(mask_path), stem, str(err))
            continue
        problem = mask_size_problem(values, width, height)
        if problem:
            report.error(str(mask_path), stem, problem)
            continue
        ids = _instance_ids(values, bits)
        if not ids and bits == 8 and (values == VOID).any():
            n_void_only += 1
            report.warn(
                str(mask_path),
                stem,
                "the mask holds only 0 and 255, and 255 is void "
                "in 8-bit instance maps (give one instance the value 1)",
                "no instance",
            )
        classes = lookup(stem, ids, values)
        coco["images"].append(
            {
                "id": image_id,
                "file_name": str(image_path.relative_to(image_root)),
                "width": width,
                "height": height,
                WHERE: (str(mask_path), stem),
            }
        )
        coco["annotations"] += _instances(
            stem,
            image_id,
            mask_path,
            classes,
            cat_ids,
            values,
            ids,
            report,
            class_file(stem),
            len(coco["annotations"]) + 1,
        )
    report.counts["void_only_masks"] = n_void_only
    return coco


# --- class sources ------------------------------------------------------------------------------


def _single_class(name: str) -> ClassLookup:
    return lambda stem, ids, values: {i: name for i in ids}


def _class_png_lookup(
    find: Callable[[str], Path | None], folder: Path, names: list[str], report: ValidationReport
) -> ClassLookup:
    """Classes from a class-id PNG per image: the one class value under each instance."""

    def lookup(stem: str, ids: list[int], values: np.ndarray) -> dict[int, str]:
        path = find(stem)
        if path is None:
            if ids:
                report.error(
                    str(folder / f"{stem}.png"), stem, "missing class PNG for this instance map"
                )
            return {}
        try:
            class_map, bits = load_label_map(path)
        except ImageProblem as err:
            report.error(str(path), stem, str(err))
            return {}
        if class_map.shape != values.shape:
            report.error(
                str(path),
                stem,
                f"class map is {class_map.shape[1]}x"
                f"{class_map.shape[0]} but the instance map is {values.shape[1]}x"
                f"{values.shape[0]}",
            )
            return {}
        classes = {}
        for instance in ids:
            under = np.unique(class_map[values == instance])
            under = under[under != 0]
            if bits == 8:
                under = under[under != VOID]
            item = f"{stem} instance {instance}"
            if len(under) == 0:
                report.error(
                    str(path), item, "no class under this instance (only background or void)"
                )
            elif len(under) > 1:
                report.error(
                    str(path), item, f"this instance spans several classes {under.tolist()[:8]}"
                )
            elif not 1 <= under[0] <= len(names):
                report.error(
                    str(path),
                    item,
                    f"class value {int(under[0])} but names lists "
                    f"{len(names)} classes (value v is names[v - 1])",
                )
            else:
                classes[instance] = names[int(under[0]) - 1]
        return classes

    return lookup


SideTable = dict[str, dict[int, str | None] | None]


def _read_side_file(path: Path, report: ValidationReport) -> SideTable | None:
    """``{image stem: {instance id: class name}}`` from a JSON or CSV side file; None when
    the file is unreadable as a whole. A malformed class maps to None, a malformed image entry
    is None: reported here, and not again as instances without a class."""
    file = str(path)
    table: SideTable = {}

    def add(stem: Any, instance: Any, name: Any, item: str) -> None:
        if not isinstance(stem, str) or not stem:
            report.error(file, item, f"image must be a non-empty file stem, got {describe(stem)}")
            return
        try:
            number = int(instance) if isinstance(instance, str) else None
        except ValueError:
            number = None
        if type(instance) is int:
            number = instance
        if number is None or number <= 0:
            report.error(
                file, item, f"instance id must be a positive integer, got {describe(instance)}"
            )
            return
        per_image = table.setdefault(stem, {})
        if per_image is None:
            return
        if number in per_image:
            report.error(file, item, f"instance {number} of {stem} given twice")
            return
        if not isinstance(name, str) or not name.strip():
            report.error(file, item, f"class must be a non-empty class name, got {describe(name)}")
            per_image[number] = None
            return
        per_image[number] = name.strip()

    if path.suffix.lower() == ".csv":
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            report.error(file, "", f"cannot read this CSV file ({err})")
            return None
        header = [h.strip() for h in rows[0]] if rows else []
        if header[:3] != ["image", "instance", "class"]:
            report.error(
                file,
                "line 1",
                f"the header must be image,instance,class, got {describe(','.join(header))}",
            )
            return None
        for lineno, row in enumerate(rows[1:], start=2):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < 3:
                report.error(
                    file,
                    f"line {lineno}",
                    f"needs image,instance,class, got {describe(','.join(row))}",
                )
                continue
            add(row[0].strip(), row[1].strip(), row[2], f"line {lineno}")
        return table
    data = load_json_object(
        path, report, 'a class side file must hold {"<image stem>": {"<instance id>": "<class>"}}'
    )
    if data is None:
        return None
    for stem, instances in data.items():
        if not isinstance(instances, dict):
            report.error(
                file, stem, f"must map instance ids to class names, got {describe(instances)}"
            )
            table[stem] = None
            continue
        for instance, name in instances.items():
            add(stem, instance, name, f"{stem} instance {instance}")
    return table


def _side_file_lookup(path: Path, table: SideTable | None, report: ValidationReport) -> ClassLookup:
    def lookup(stem: str, ids: list[int], values: np.ndarray) -> dict[int, str]:
        if table is None or table.get(stem, {}) is None:
            return {}  # the side file or this image's entry is broken: reported already
        given = table.get(stem) or {}
        for instance in ids:
            if instance not in given:
                report.error(
                    str(path), f"{stem} instance {instance}", "no class given for this instance"
                )
        for instance in sorted(set(given) - set(ids)):
            report.warn(
                str(path),
                f"{stem} instance {instance}",
                "class given for an instance that is not in the mask",
                "ignored",
            )
        return {i: given[i] for i in ids if given.get(i) is not None}

    return lookup


# --- instance_png -------------------------------------------------------------------------------


def import_instance_png(
    image_dir: str | Path,
    mask_dir: str | Path,
    *,
    mask_suffix: str = "",
    classes: str | None = None,
    class_names: Any = None,
    strict: bool = False,
    decode_images: bool = True,
) -> tuple[Coco, ValidationReport]:
    """Images + instance-id PNGs paired by file stem (``<stem><mask_suffix>.png``).
    ``classes``: None (one class, ``names[0]`` when ``class_names`` has one name, else
    ``object``), a class name, a folder of class-id PNGs (needs ``class_names``), or a side
    file (.json / .csv; ``class_names`` then fixes the order, default the sorted names used).
    An image without a mask is dropped with a warning (an image without objects has an
    all-zero mask)."""
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    report = ValidationReport(source=f"{mask_dir} (instance PNG)", strict=strict)
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            report.error(str(folder), "", "folder does not exist")
    report.raise_if_errors()
    if image_dir.resolve() == mask_dir.resolve() and not mask_suffix:
        raise DataError(
            f"{mask_dir}: images and masks share this folder, so `mask_suffix:` "
            "must tell them apart (e.g. _mask for img001_mask.png)"
        )

    maps: dict[str, Path] = {}
    # label maps by stem; lossy files are listed too (and refused when read)
    for stem, path in list_images(mask_dir).items():
        if stem.endswith(mask_suffix) and len(stem) > len(mask_suffix):
            maps[stem[: len(stem) - len(mask_suffix)]] = path
    mask_files = {p.resolve() for p in maps.values()}
    images = {
        stem: p for stem, p in list_images(image_dir).items() if p.resolve() not in mask_files
    }
    for stem in sorted(set(maps) - set(images)):
        report.warn(str(maps[stem]), stem, "mask without an image", "dropped")
    for stem in sorted(set(images) - set(maps)):
        report.warn(
            str(images[stem]), stem, f"image without a mask ({stem}{mask_suffix}.png)", "dropped"
        )
    pairs = [(stem, images[stem], maps[stem]) for stem in sorted(set(images) & set(maps))]

    names, lookup, class_file = _class_source(classes, class_names, mask_suffix, mask_dir, report)
    coco = _import_maps(pairs, image_dir, names, lookup, class_file, report, decode_images)
    clean = validate_coco(
        coco, image_dir, report, source_file=str(mask_dir), decode_images=False
    )  # decoded above already
    return clean, report


def _class_source(
    classes: str | None,
    class_names: Any,
    mask_suffix: str,
    mask_dir: Path,
    report: ValidationReport,
) -> tuple[list[str], ClassLookup, Callable[[str], str]]:
    """The class names, the class lookup, and the file a class problem of an image names."""
    given = resolve_class_names(class_names) if class_names is not None else None
    if isinstance(classes, (list, tuple)):
        return _class_list_source(list(classes), given, mask_suffix, mask_dir, report)
    side = _class_source_path(classes)
    if side is None:  # one class for all
        if classes is None:
            if given is not None and len(given) > 1:
                raise DataError(
                    f"{mask_dir}: names lists {len(given)} classes but no `classes:` "
                    "says which instance has which (a class PNG folder or a side file)"
                )
            name = given[0] if given else DEFAULT_CLASS
        else:
            name = classes.strip()
            if given is not None and given != [name]:
                raise DataError(
                    f"{mask_dir}: classes names one class {name!r} for all "
                    f"instances, but names lists {given}"
                )
        return [name], _single_class(name), lambda stem: str(mask_dir)
    if side.is_dir():
        if given is None:
            raise DataError(
                f"{side}: a folder of class-id PNGs needs `names:` (value v is names[v - 1])"
            )
        class_maps = list_images(side)  # lossy files too (refused when read)

        def find(stem: str) -> Path | None:
            return class_maps.get(f"{stem}{mask_suffix}") or class_maps.get(stem)

        return (
            given,
            _class_png_lookup(find, side, given, report),
            lambda stem: str(find(stem) or side),
        )
    table = _read_side_file(side, report)
    names = (
        given
        if given is not None
        else sorted(
            {
                n
                for per_image in (table or {}).values()
                for n in (per_image or {}).values()
                if n is not None
            }
        )
    )
    if not names:
        if table is not None:
            report.error(str(side), "", "names no class for any instance")
        report.raise_if_errors()
    return names, _side_file_lookup(side, table, report), lambda stem: str(side)


def _class_list_source(
    listed: list[Any],
    given: list[str] | None,
    mask_suffix: str,
    mask_dir: Path,
    report: ValidationReport,
) -> tuple[list[str], ClassLookup, Callable[[str], str]]:
    """``classes: [a, b, ...]``: instance id v has class names[v - 1] in every image (one
    name: every instance has it)."""
    names = [n.strip() for n in listed if isinstance(n, str) and n.strip()]
    if not names or len(names) != len(listed):
        raise DataError(
            f"classes: a list must hold class names (id v is the v-th name), got {describe(listed)}"
        )
    if given is not None and given != names:
        raise DataError(f"{mask_dir}: classes lists {names} but names lists {given}")
    if len(names) == 1:
        return names, _single_class(names[0]), lambda stem: str(mask_dir)

    def lookup(stem: str, ids: list[int], values: np.ndarray) -> dict[int, str]:
        for instance in ids:
            if instance > len(names):
                report.error(
                    str(mask_dir / f"{stem}{mask_suffix}.png"),
                    f"{stem} instance {instance}",
                    f"instance id {instance} has no class: classes lists {len(names)} "
                    "names (id v is the v-th)",
                )
        return {i: names[i - 1] for i in ids if i <= len(names)}

    return names, lookup, lambda stem: str(mask_dir)


def _class_source_path(classes: str | None) -> Path | None:
    """The folder or side file ``classes`` names, or None when it is a class name. A value
    that looks like a path (a separator or a file suffix) but names nothing is an error, so a
    typo in a path never becomes a class called ``data/clases``."""
    if classes is None:
        return None
    if not isinstance(classes, str) or not classes.strip():
        raise DataError(
            f"classes: must be a class name, a folder of class PNGs or a side file, "
            f"got {describe(classes)}"
        )
    path = Path(classes)
    if path.is_dir() or path.is_file():
        return path
    if "/" in classes or "\\" in classes or path.suffix.lower() in (".json", ".csv", ".txt"):
        raise DataError(f"{classes}: classes names no existing folder or file")
    return None


# --- VOC without XML (labelme2voc) ----------------------------------------------------------------


def _voc_names(root: Path, class_names: Any) -> list[str]:
    """``class_names`` when given; else labelme2voc's ``class_names.txt`` (its first line,
    ``_background_``, is value 0 and dropped); else the 20 VOC classes."""
    if class_names is not None:
        return resolve_class_names(class_names)
    listed = root / "class_names.txt"
    if listed.is_file():
        names = resolve_class_names(str(listed))
        return (
            [n for n in names if n not in LABELME_NON_CLASSES]
            if names[0] in LABELME_NON_CLASSES
            else names
        )
    return resolve_class_names("voc")


def import_voc_masks(
    root: str | Path,
    split: str | None = None,
    *,
    class_names: Any = None,
    strict: bool = False,
    decode_images: bool = True,
) -> tuple[Coco, ValidationReport]:
    """A VOC folder without ``Annotations/``: instances from ``SegmentationObject/*.png``,
    their classes from ``SegmentationClass/*.png`` (or labelme2voc's ``...PNG/`` folders),
    images from ``JPEGImages/``, boxes from the masks. The split is
    ``ImageSets/Segmentation/<split>.txt`` (or ``Main``), every instance PNG when no split."""

    root = Path(root)
    report = ValidationReport(
        source=f"{root} (VOC masks{'/' + split if split else ''})", strict=strict
    )
    object_dir = next(
        (
            root / d
            for d in ("SegmentationObject", "SegmentationObjectPNG")
            if any((root / d).glob("*.png"))
        ),
        None,
    )
    class_dir = next(
        (
            root / d
            for d in ("SegmentationClass", "SegmentationClassPNG")
            if any((root / d).glob("*.png"))
        ),
        None,
    )
    if object_dir is None or class_dir is None:
        raise DataError(
            f"{root}: not a VOC folder: no Annotations/*.xml, and no "
            "SegmentationObject/*.png + SegmentationClass/*.png to read instances from"
        )
    if not (root / "JPEGImages").is_dir():
        raise DataError(f"{root}: no JPEGImages/ folder")
    names = _voc_names(root, class_names)
    images = list_images(root / "JPEGImages")
    pairs = []
    for stem in voc_image_ids(root, split, report, (object_dir.name, ".png")):
        mask_path = object_dir / f"{stem}.png"
        if stem not in images:
            report.error(str(root / "JPEGImages" / f"{stem}.jpg"), stem, "missing image file")
        elif not mask_path.is_file():
            report.error(str(mask_path), stem, "instance PNG listed in the split is missing")
        else:
            pairs.append((stem, images[stem], mask_path))

    def find(stem: str) -> Path | None:
        path = class_dir / f"{stem}.png"
        return path if path.is_file() else None

    lookup = _class_png_lookup(find, class_dir, names, report)
    coco = _import_maps(
        pairs,
        root / "JPEGImages",
        names,
        lookup,
        lambda stem: str(find(stem) or class_dir),
        report,
        decode_images,
    )
    clean = validate_coco(
        coco, root / "JPEGImages", report, source_file=str(object_dir), decode_images=False
    )
    return clean, report
