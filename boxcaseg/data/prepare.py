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

from pathlib import Path
from typing import Any

from boxcaseg.data.coco import Coco, has_masks, save_json, strip_masks
from boxcaseg.data.importers import (import_coco, import_duts, import_salient, import_voc,
                                     import_yolo_seg)
from boxcaseg.data.report import DataError, ValidationReport

BOX_FORMATS = ("coco", "voc", "yolo_seg")
SALIENT_FORMATS = ("duts", "folders")


def import_box_split(source: dict[str, Any], *, strict: bool, decode_images: bool
                     ) -> tuple[Coco, ValidationReport]:
    """Dispatch on ``source['format']`` (one split's entry of the ``data`` config section)."""
    fmt = source.get("format")
    opts = {"strict": strict, "decode_images": decode_images}
    if fmt == "coco":
        return import_coco(source["annotations"], source["images"], **opts)
    if fmt == "voc":
        return import_voc(source["root"], source.get("split"),
                          class_names=source.get("names", "voc"), **opts)
    if fmt == "yolo_seg":
        return import_yolo_seg(source["images"], source["labels"], source["names"], **opts)
    raise DataError(f"unknown box dataset format {fmt!r} (one of {', '.join(BOX_FORMATS)})")


def import_salient_set(source: dict[str, Any], *, strict: bool, decode_images: bool
                       ) -> tuple[dict[str, Any], ValidationReport]:
    fmt = source.get("format")
    opts = {"strict": strict, "decode_images": decode_images}
    if fmt == "duts":
        return import_duts(source["root"], **opts)
    if fmt == "folders":
        return import_salient(source["images"], source["masks"], **opts)
    raise DataError(f"unknown salient set format {fmt!r} (one of {', '.join(SALIENT_FORMATS)})")


def write_box_split(coco: Coco, report: ValidationReport, out_dir: Path, split: str) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    save_json(strip_masks(coco), out_dir / f"{split}.boxes.json")
    masks = has_masks(coco)
    if masks:
        save_json(coco, out_dir / f"{split}.gt.json")
    save_json({**report.to_dict(), "has_masks": masks}, out_dir / f"{split}.report.json", indent=1)
    return {"split": split, "has_masks": masks, **report.counts}


def prepare_dataset(data_cfg: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Import, validate and write every split named in ``data_cfg`` (the config's ``data``
    section: ``splits: {train: {...}, val: {...}}``, ``salient: {...}``, ``strict``,
    ``decode_images``). Raises :class:`DataError` listing all problems; writes nothing then."""
    out_dir = Path(out_dir)
    strict = bool(data_cfg.get("strict", False))
    decode = bool(data_cfg.get("decode_images", True))
    imported = {}
    for split, source in data_cfg["splits"].items():
        coco, report = import_box_split(source, strict=strict, decode_images=decode)
        report.raise_if_errors()
        imported[split] = (coco, report)
    salient, salient_report = import_salient_set(data_cfg["salient"], strict=strict,
                                                 decode_images=decode)
    salient_report.raise_if_errors()
    # category lists must agree between splits, or ids would mean different classes
    names = {split: [c["name"] for c in coco["categories"]] for split, (coco, _) in imported.items()}
    if len({tuple(v) for v in names.values()}) > 1:
        raise DataError(f"splits disagree on categories: {names}")

    summary = {"splits": {}, "salient": None}
    for split, (coco, report) in imported.items():
        summary["splits"][split] = write_box_split(coco, report, out_dir, split)
    save_json(salient, out_dir / "salient.json")
    save_json(salient_report.to_dict(), out_dir / "salient.report.json", indent=1)
    summary["salient"] = salient_report.counts
    summary["warnings"] = {
        **{split: len(r.warnings) for split, (_, r) in imported.items()},
        "salient": len(salient_report.warnings)}
    save_json(summary, out_dir / "summary.json", indent=1)
    return summary
