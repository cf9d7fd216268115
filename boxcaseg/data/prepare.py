"""Stage 1 outputs, per split: what training may see, and what only evaluation may see.

For a box dataset split ``<split>`` the stage writes into its output folder:
- ``<split>.boxes.json``  box-only COCO (no ``segmentation`` key anywhere): the training input;
- ``<split>.gt.json``     the same with true masks, for evaluation only (when the source has them);
- ``<split>.report.json`` counts, warnings and what was dropped or clipped, and why.
For the salient set: ``salient.json`` (image/mask pairs) and ``salient.report.json``.

Nothing is written before the whole input validated, and files are replaced atomically, so a
failed import never leaves a half-updated dataset behind.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from boxcaseg.data.coco import Coco, has_masks, import_coco, save_json, strip_masks
from boxcaseg.data.fields import describe
from boxcaseg.data.instance_masks import import_instance_png
from boxcaseg.data.labelme import import_labelme
from boxcaseg.data.report import DataError, ValidationReport
from boxcaseg.data.salient import import_duts, import_salient
from boxcaseg.data.voc import import_voc
from boxcaseg.data.yolo_seg import import_yolo_seg

BOX_FORMATS = ("coco", "voc", "yolo_seg", "instance_png", "labelme")
SALIENT_FORMATS = ("duts", "folders")

# The path keys each format needs (required, optional); `names` and `classes` are checked by
# the importers, which know what they may be.
FORMAT_KEYS = {
    "coco": (("annotations", "images"), ()),
    "voc": (("root",), ("split",)),
    "yolo_seg": (("images", "labels", "names"), ()),
    "instance_png": (("images", "masks"), ("mask_suffix",)),
    "labelme": (("root",), ()),
    "duts": (("root",), ()),
    "folders": (("images", "masks"), ()),
}


# Every key a box source may have besides `format`: its path keys (FORMAT_KEYS) and the class
# names / classes, which the importers check themselves.
BOX_SOURCE_KEYS = tuple(
    dict.fromkeys(
        [k for fmt in BOX_FORMATS for k in FORMAT_KEYS[fmt][0] + FORMAT_KEYS[fmt][1]]
        + ["names", "classes"]
    )
)


# The keys whose files (or folders: a change of their entries counts) hold a source's
# annotations: the workflow makes them the inputs of its import rules, so that an edit reruns
# the import. Image folders are not among them: the import validates the images itself.
ANNOTATION_PATH_KEYS = ("annotations", "labels", "masks", "root", "names", "classes")


def annotation_paths(source: dict[str, Any]) -> list[str]:
    """The paths of ``source`` (a box split, or ``data.derive``) under
    :data:`ANNOTATION_PATH_KEYS` that exist (``names: coco80`` is a builtin list, no path)."""
    return [
        source[k]
        for k in ANNOTATION_PATH_KEYS
        if isinstance(source.get(k), str) and os.path.exists(source[k])
    ]


def source_entry(section: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``section`` that describe a box source (``format`` and
    :data:`BOX_SOURCE_KEYS`), e.g. from ``data.derive``, which mixes them with its own settings."""
    return {k: v for k, v in section.items() if k == "format" or k in BOX_SOURCE_KEYS}


def _source_keys(source: Any, known: tuple[str, ...], what: str) -> str:
    """Check one ``data`` entry's shape: an object with a known ``format`` and its keys as
    non-empty strings. Returns the format."""
    if not isinstance(source, dict):
        raise DataError(f"{what}: must be an object {{format: ..., ...}}, got {describe(source)}")
    fmt = source.get("format")
    if fmt not in known:
        raise DataError(f"{what}: unknown format {describe(fmt)} (one of {', '.join(known)})")
    required, optional = FORMAT_KEYS[fmt]
    for key in required + optional:
        value = source.get(key)
        if value is None:
            if key in required:
                raise DataError(f"{what}: format {fmt} needs '{key}'")
            continue
        if key == "names":
            continue  # a list, a builtin list name or a file: the importer checks it
        if key == "mask_suffix":
            if not isinstance(value, str):
                raise DataError(f"{what}: 'mask_suffix' must be a string, got {describe(value)}")
            continue
        if not isinstance(value, str) or not value.strip():
            raise DataError(
                f"{what}: '{key}' must be a non-empty path or name, got {describe(value)}"
            )
    return fmt


def import_box_split(
    source: dict[str, Any], *, strict: bool, decode_images: bool, where: str = "data.splits entry"
) -> tuple[Coco, ValidationReport]:
    """Dispatch on ``source['format']`` (one split's entry of the ``data`` config section).
    Any exception an importer lets slip is turned into a :class:`DataError` naming the source,
    so bad input never ends in a traceback (the importers' own checks should catch it first)."""
    fmt = _source_keys(source, BOX_FORMATS, where)
    opts = {"strict": strict, "decode_images": decode_images}
    try:
        if fmt == "coco":
            return import_coco(source["annotations"], source["images"], **opts)
        if fmt == "voc":
            return import_voc(
                source["root"], source.get("split"), class_names=source.get("names"), **opts
            )
        if fmt == "yolo_seg":
            return import_yolo_seg(source["images"], source["labels"], source["names"], **opts)
        if fmt == "instance_png":
            return import_instance_png(
                source["images"],
                source["masks"],
                mask_suffix=source.get("mask_suffix") or "",
                classes=source.get("classes"),
                class_names=source.get("names"),
                **opts,
            )
        return import_labelme(source["root"], source.get("names"), **opts)
    except DataError as err:
        if str(err).startswith(where):
            raise
        raise DataError(f"{where}: {err}") from err
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        OverflowError,
        OSError,
        RecursionError,
    ) as err:
        paths = ", ".join(
            str(source[k])
            for k in ("annotations", "root", "labels", "masks", "images")
            if k in source
        )
        raise DataError(
            f"{paths}: unexpected {type(err).__name__} while importing this "
            f"{fmt} data ({err}); the input is malformed in a way BoxCaseg does not "
            "check yet: please report it"
        ) from err


def import_salient_source(
    source: dict[str, Any], *, strict: bool, decode_images: bool
) -> tuple[dict[str, Any], ValidationReport]:
    fmt = _source_keys(source, SALIENT_FORMATS, "data.salient")
    opts = {"strict": strict, "decode_images": decode_images}
    if fmt == "duts":
        return import_duts(source["root"], **opts)
    return import_salient(source["images"], source["masks"], **opts)


def import_salient_set(
    sources: dict[str, Any] | list[dict[str, Any]], *, strict: bool, decode_images: bool
) -> tuple[dict[str, Any], list[ValidationReport]]:
    """One salient index from one source or a list of them (e.g. DUTS plus your own): pairs
    in source order, renumbered; one report per source. Every source's problems are listed
    before anything is raised."""
    if not isinstance(sources, (dict, list)):
        raise DataError(
            "data.salient must name a salient set (a {format: ...} entry or a "
            f"list of them), got {describe(sources)}"
        )
    sources = [sources] if isinstance(sources, dict) else list(sources)
    if not sources:
        raise DataError("data.salient names no salient set (a {format: ...} entry or a list)")
    entries: list[dict[str, Any]] = []
    reports = []
    for source in sources:
        salient, report = import_salient_source(source, strict=strict, decode_images=decode_images)
        reports.append(report)
        for entry in salient["salient"]:
            entries.append({**entry, "id": len(entries) + 1, "source": report.source})
    if any(report.errors for report in reports):
        merged = ValidationReport(source="salient sets", strict=strict)
        merged.errors = [issue for report in reports for issue in report.errors]
        merged.raise_if_errors()
    return {"salient": entries}, reports


def select_categories(coco: Coco, names: list[str], report: ValidationReport) -> Coco:
    """Only the named classes (``data.categories``): their annotations (crowd regions of
    other classes go too), categories renumbered 1..K in the order given. Images keep their
    place (an image without these classes is a negative for evaluation)."""
    known = {c["name"]: c["id"] for c in coco["categories"]}
    unknown = [n for n in names if n not in known]
    if unknown:
        report.error(
            report.source,
            "data.categories",
            f"unknown class name(s) {unknown} (the dataset has: {sorted(known)[:30]})",
        )
        return coco
    new_id = {known[n]: k + 1 for k, n in enumerate(names)}
    annotations = [
        {**a, "category_id": new_id[a["category_id"]]}
        for a in coco["annotations"]
        if a["category_id"] in new_id
    ]
    per_category = Counter(names[a["category_id"] - 1] for a in annotations if not a["iscrowd"])
    report.counts.update(
        {
            "annotations": len(annotations),
            "crowd_or_ignored": sum(a["iscrowd"] for a in annotations),
            "images_without_boxes": len(
                {i["id"] for i in coco["images"]} - {a["image_id"] for a in annotations}
            ),
            "per_category": dict(sorted(per_category.items())),
            "categories_selected": list(names),
        }
    )
    if not any(not a["iscrowd"] for a in annotations):
        report.error(report.source, "data.categories", f"no box of {names} in this split")
    return {
        **coco,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)],
    }


MASKS_NEEDED = {
    "val": "the val split has no masks: evaluation (mIoU*, mask AP) needs them",
    "train": "the 'full' baseline trains on true masks, but the train split has none: remove "
    "'full' from detection.variants",
}


def write_box_split(
    coco: Coco, report: ValidationReport, out_dir: Path, split: str
) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_json(strip_masks(coco), out_dir / f"{split}.boxes.json")
    masks = has_masks(coco)
    if masks:
        save_json(coco, out_dir / f"{split}.gt.json")
    save_json({**report.to_dict(), "has_masks": masks}, out_dir / f"{split}.report.json", indent=1)
    return {"split": split, "has_masks": masks, **report.counts}


def prepare_dataset(
    data_cfg: dict[str, Any],
    out_dir: str | Path,
    *,
    require_masks: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """Import, validate and write every split named in ``data_cfg`` (the config's ``data``
    section: ``splits: {train: {...}, val: {...}}``, ``salient: {...}``, ``strict``,
    ``decode_images``). Raises :class:`DataError` listing all problems; writes nothing then.
    ``require_masks``: splits that must carry true masks (checked before anything is written)."""
    out_dir = Path(out_dir)
    if not isinstance(data_cfg, dict):
        raise DataError(f"data: must be an object, got {describe(data_cfg)}")
    splits = data_cfg.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise DataError(f"data.splits must map split names to sources, got {describe(splits)}")
    strict = bool(data_cfg.get("strict", False))
    decode = bool(data_cfg.get("decode_images", True))
    categories = data_cfg.get("categories")
    imported = {}
    for split, source in splits.items():
        coco, report = import_box_split(
            source, strict=strict, decode_images=decode, where=f"data.splits.{split}"
        )
        report.raise_if_errors()
        if categories:
            coco = select_categories(coco, list(categories), report)
            report.raise_if_errors()
        imported[split] = (coco, report)
    for split in require_masks:
        if split in imported and not has_masks(imported[split][0]):
            raise DataError(MASKS_NEEDED.get(split, f"the {split} split has no masks"))
    salient, salient_reports = import_salient_set(
        data_cfg.get("salient"), strict=strict, decode_images=decode
    )
    # category lists must agree between splits, or ids would mean different classes
    names = {
        split: [c["name"] for c in coco["categories"]] for split, (coco, _) in imported.items()
    }
    if len({tuple(v) for v in names.values()}) > 1:
        raise DataError(f"splits disagree on categories: {names}")

    summary = {"splits": {}, "salient": None}
    for split, (coco, report) in imported.items():
        summary["splits"][split] = write_box_split(coco, report, out_dir, split)
    save_json(salient, out_dir / "salient.json")
    save_json(
        {"sources": [r.to_dict() for r in salient_reports]},
        out_dir / "salient.report.json",
        indent=1,
    )
    summary["salient"] = {
        "pairs": len(salient["salient"]),
        "sources": {r.source: r.counts for r in salient_reports},
    }
    summary["warnings"] = {
        **{split: len(r.warnings) for split, (_, r) in imported.items()},
        "salient": sum(len(r.warnings) for r in salient_reports),
    }
    save_json(summary, out_dir / "summary.json", indent=1)
    return summary
