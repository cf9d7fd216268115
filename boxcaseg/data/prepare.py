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

from collections import Counter
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


def import_salient_source(source: dict[str, Any], *, strict: bool, decode_images: bool
                          ) -> tuple[dict[str, Any], ValidationReport]:
    fmt = source.get("format")
    opts = {"strict": strict, "decode_images": decode_images}
    if fmt == "duts":
        return import_duts(source["root"], **opts)
    if fmt == "folders":
        return import_salient(source["images"], source["masks"], **opts)
    raise DataError(f"unknown salient set format {fmt!r} (one of {', '.join(SALIENT_FORMATS)})")


def import_salient_set(sources: dict[str, Any] | list[dict[str, Any]], *, strict: bool,
                       decode_images: bool) -> tuple[dict[str, Any], list[ValidationReport]]:
    """One salient index from one source or a list of them (e.g. DUTS plus your own): pairs
    in source order, renumbered; one report per source. Every source's problems are listed
    before anything is raised."""
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
        report.error(report.source, "data.categories", f"unknown class name(s) {unknown} "
                     f"(the dataset has: {sorted(known)[:30]})")
        return coco
    new_id = {known[n]: k + 1 for k, n in enumerate(names)}
    annotations = [{**a, "category_id": new_id[a["category_id"]]}
                   for a in coco["annotations"] if a["category_id"] in new_id]
    per_category = Counter(names[a["category_id"] - 1] for a in annotations if not a["iscrowd"])
    report.counts.update({
        "annotations": len(annotations),
        "crowd_or_ignored": sum(a["iscrowd"] for a in annotations),
        "images_without_boxes": len({i["id"] for i in coco["images"]}
                                    - {a["image_id"] for a in annotations}),
        "per_category": dict(sorted(per_category.items())),
        "categories_selected": list(names)})
    if not any(not a["iscrowd"] for a in annotations):
        report.error(report.source, "data.categories", f"no box of {names} in this split")
    return {**coco, "annotations": annotations,
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}


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
    categories = data_cfg.get("categories")
    imported = {}
    for split, source in data_cfg["splits"].items():
        coco, report = import_box_split(source, strict=strict, decode_images=decode)
        report.raise_if_errors()
        if categories:
            coco = select_categories(coco, list(categories), report)
            report.raise_if_errors()
        imported[split] = (coco, report)
    salient, salient_reports = import_salient_set(data_cfg["salient"], strict=strict,
                                                  decode_images=decode)
    # category lists must agree between splits, or ids would mean different classes
    names = {split: [c["name"] for c in coco["categories"]] for split, (coco, _) in imported.items()}
    if len({tuple(v) for v in names.values()}) > 1:
        raise DataError(f"splits disagree on categories: {names}")

    summary = {"splits": {}, "salient": None}
    for split, (coco, report) in imported.items():
        summary["splits"][split] = write_box_split(coco, report, out_dir, split)
    save_json(salient, out_dir / "salient.json")
    save_json({"sources": [r.to_dict() for r in salient_reports]}, out_dir / "salient.report.json",
              indent=1)
    summary["salient"] = {"pairs": len(salient["salient"]),
                          "sources": {r.source: r.counts for r in salient_reports}}
    summary["warnings"] = {
        **{split: len(r.warnings) for split, (_, r) in imported.items()},
        "salient": sum(len(r.warnings) for r in salient_reports)}
    save_json(summary, out_dir / "summary.json", indent=1)
    return summary
