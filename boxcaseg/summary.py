"""The run's headline table: mask quality of the proxy masks and of each Mask R-CNN's mask
head (both inside the true boxes), and mask AP of the Mask R-CNN variants (weak = BoxCaseg
proxy masks, full = true masks, box = box filled as mask)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from boxcaseg.data.coco import load_json, save_json
from boxcaseg.figures import format_cell, results_table

VARIANT_NAMES = {
    "weak": "BoxCaseg (proxy masks)",
    "full": "fully supervised (true masks)",
    "box": "box as mask",
    "grabcut": "GrabCut masks",
    "boxinst": "BoxInst (mmdet, boxes only)",
}
# train-split mask files graded against the true masks, by the name their quality file has
QUALITY_NAMES = {"proxy": "proxy masks, train (mIoU*)", "grabcut": "GrabCut masks, train (mIoU*)"}
AP_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _quality_row(label: str, masks: dict[str, Any], boxes: dict[str, Any]) -> dict[str, Any]:
    """A row of the mask-quality table: masks and the box-as-mask baseline, mIoU* in %."""
    return {
        "masks": label,
        "mIoU*": masks["miou_star"] * 100,
        "box-as-mask mIoU*": boxes["miou_star"] * 100,
    }


def summarize(
    variant_metrics: dict[str, str],
    seg_metrics: str | None,
    quality_files: dict[str, str],
    out_json: str,
    out_md: str,
    out_png: str,
) -> dict[str, Any]:
    """``quality_files``: name ('proxy', 'grabcut') -> the quality JSON of Stage 4's report."""
    ap_rows, mask_head_rows = [], []
    for variant, path in variant_metrics.items():
        metrics = load_json(path)
        row = {"model": VARIANT_NAMES.get(variant, variant)}
        row.update({f"mask {k}": metrics["segm"].get(k) for k in AP_COLUMNS})
        row["box AP"] = metrics["bbox"].get("AP")
        ap_rows.append(row)
        graded = metrics.get("mask_head_in_true_boxes")  # the mask head given the true boxes
        if graded:
            mask_head_rows.append(
                _quality_row(
                    f"Mask R-CNN mask head, {variant}, val (mIoU*)",
                    graded["model"],
                    graded["box_as_mask"],
                )
            )
    quality_rows = []
    if seg_metrics and Path(seg_metrics).is_file():
        seg = load_json(seg_metrics)
        if "model" in seg:
            quality_rows.append(
                _quality_row("salient head, val (mIoU*)", seg["model"], seg["box_as_mask"])
            )
    for name, path in quality_files.items():
        quality = load_json(path).get("quality") or {} if Path(path).is_file() else {}
        if quality.get("instances"):
            quality_rows.append(
                _quality_row(
                    QUALITY_NAMES.get(name, name), quality["proxy"], quality["box_as_mask"]
                )
            )
    quality_rows += mask_head_rows
    ap_columns = ["model"] + [f"mask {k}" for k in AP_COLUMNS] + ["box AP"]
    q_columns = ["masks", "mIoU*", "box-as-mask mIoU*"]
    text = "## Mask AP on the val split (pycocotools, %)\n\n" + _markdown(ap_rows, ap_columns)
    if quality_rows:
        text += "\n\n## Mask quality inside the true boxes (%)\n\n" + _markdown(
            quality_rows, q_columns
        )
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(out_md).write_text(text + "\n")
    results_table(ap_rows, ap_columns, out_png, "Mask R-CNN on the val split (AP in %)")
    result = {"ap": ap_rows, "mask_quality": quality_rows}
    save_json(result, out_json, indent=1)
    return result
