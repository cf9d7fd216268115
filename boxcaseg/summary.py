"""The run's headline table: mask quality of the proxy masks and of each Mask R-CNN's mask
head (both inside the true boxes), and mask AP of the Mask R-CNN variants (weak = BoxCaseg
proxy masks, full = true masks, box = box filled as mask, ...) beside what each cost to train
(the wall and CPU seconds of the jobs that made it, from Snakemake's benchmark files)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from boxcaseg.data.coco import load_json, save_json
from boxcaseg.figures import format_cell, quality_breakdown, results_table

VARIANT_NAMES = {
    "weak": "BoxCaseg (proxy masks)",
    "full": "fully supervised (true masks)",
    "box": "box as mask",
    "grabcut": "GrabCut masks",
    "boxinst": "BoxInst (mmdet, boxes only)",
    "boxinst_equal": "BoxInst at BoxCaseg's compute",
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


def job_cost(benchmark_files: list[str]) -> dict[str, float]:
    """Wall and CPU seconds of the jobs whose Snakemake benchmark files are given, summed."""
    wall = cpu = 0.0
    for path in benchmark_files:
        header, values = Path(path).read_text().splitlines()[:2]
        row = dict(zip(header.split("\t"), values.split("\t"), strict=True))
        wall += float(row["s"])
        cpu += float(row["cpu_time"]) if row.get("cpu_time", "NA") != "NA" else 0.0
    return {"wall_s": wall, "cpu_s": cpu}


def equal_compute_note(costs: dict[str, dict[str, float]]) -> str | None:
    """The sentence that puts BoxInst's cost beside BoxCaseg's route (weak), with the
    boxinst_equal_ratio that would make them equal on this machine."""
    if "weak" not in costs or "boxinst" not in costs or not costs["boxinst"]["wall_s"]:
        return None
    route, boxinst = costs["weak"], costs["boxinst"]
    note = (
        f"Compute: BoxCaseg's route (Stage 2 + Stage 3 + Stage 4 + its Mask R-CNN) took "
        f"{route['wall_s']:.0f} s wall / {route['cpu_s']:.0f} s CPU, BoxInst "
        f"{boxinst['wall_s']:.0f} / {boxinst['cpu_s']:.0f} s: equal compute is "
        f"detection.boxinst_equal_ratio = {route['cpu_s'] / max(boxinst['cpu_s'], 1e-9):.2f} "
        "(CPU seconds)"
    )
    if "boxinst_equal" in costs:
        equal = costs["boxinst_equal"]
        note += (
            f"; BoxInst at equal compute took {equal['wall_s']:.0f} s wall / "
            f"{equal['cpu_s']:.0f} s CPU"
        )
    return note + "."


def summarize(
    variant_metrics: dict[str, str],
    seg_metrics: str | None,
    quality_files: dict[str, str],
    out_json: str,
    out_md: str,
    out_png: str,
    variant_costs: dict[str, list[str]] | None = None,
    out_breakdown_png: str | None = None,
) -> dict[str, Any]:
    """``quality_files``: name ('proxy', 'grabcut') -> the quality JSON of Stage 4's report;
    ``variant_costs``: variant -> the benchmark files of the jobs that trained it (for the
    weak variant Stage 2, Stage 3, Stage 4 and its Mask R-CNN). ``out_breakdown_png``: the
    train masks' quality by fill, size and class (:func:`boxcaseg.figures.quality_breakdown`)."""
    costs = {v: job_cost(files) for v, files in (variant_costs or {}).items()}
    ap_rows, mask_head_rows = [], []
    for variant, path in variant_metrics.items():
        metrics = load_json(path)
        row = {"model": VARIANT_NAMES.get(variant, variant)}
        row.update({f"mask {k}": metrics["segm"].get(k) for k in AP_COLUMNS})
        row["box AP"] = metrics["bbox"].get("AP")
        if variant in costs:
            row["train wall s"] = round(costs[variant]["wall_s"])
            row["train CPU s"] = round(costs[variant]["cpu_s"])
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
    graded = {}
    for name, path in quality_files.items():
        quality = load_json(path).get("quality") or {} if Path(path).is_file() else {}
        if quality.get("instances"):
            graded[name] = quality
            quality_rows.append(
                _quality_row(
                    QUALITY_NAMES.get(name, name), quality["proxy"], quality["box_as_mask"]
                )
            )
    quality_rows += mask_head_rows
    ap_columns = ["model"] + [f"mask {k}" for k in AP_COLUMNS] + ["box AP"]
    if costs:
        ap_columns += ["train wall s", "train CPU s"]
    q_columns = ["masks", "mIoU*", "box-as-mask mIoU*"]
    text = "## Mask AP on the val split (pycocotools, %)\n\n" + _markdown(ap_rows, ap_columns)
    if costs:
        text += (
            "\n\ntrain wall s / CPU s: the jobs that made each detector from Stage 1's files "
            "(Snakemake's benchmark files; for BoxCaseg Stage 2, Stage 3, Stage 4 and its "
            "Mask R-CNN)."
        )
    note = equal_compute_note(costs)
    if note:
        text += " " + note
    if quality_rows:
        text += "\n\n## Mask quality inside the true boxes (%)\n\n" + _markdown(
            quality_rows, q_columns
        )
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(out_md).write_text(text + "\n")
    results_table(ap_rows, ap_columns, out_png, "Mask R-CNN on the val split (AP in %)")
    if out_breakdown_png:
        if graded:
            quality_breakdown(graded, out_breakdown_png)
        else:  # no true masks for the train split: nothing to break down
            results_table([{"": "no true train masks to grade against"}], [""],
                          out_breakdown_png, "mask quality breakdown")  # fmt: skip
    result = {"ap": ap_rows, "mask_quality": quality_rows, "costs": costs}
    save_json(result, out_json, indent=1)
    return result
