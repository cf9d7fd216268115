"""Pictures for the Snakemake report: dataset summary, loss curves, proxy-mask overlays and the
final AP table. matplotlib (Agg), PNG out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from boxcaseg.data.coco import Coco, image_path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_scalars(work_dir: str | Path) -> list[dict[str, Any]]:
    """mmengine's logged scalars (``*/vis_data/scalars.json``, one JSON per line) of every run
    in a work dir (a resumed training has several), merged by step, later runs winning."""
    by_step: dict[tuple[int, bool], dict[str, Any]] = {}
    for path in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                key = (int(row.get("step", row.get("iter", 0))), "loss" in row)
                by_step[key] = row
    return [by_step[k] for k in sorted(by_step)]


def loss_curves(work_dir: str | Path, out_png: str | Path, title: str) -> None:
    """One line per logged loss term over iterations."""
    plt = _plt()
    rows = [r for r in read_scalars(work_dir) if "loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    keys = sorted({k for r in rows for k in r if k.startswith("loss")})
    for key in keys:
        pts = [(r["step"], r[key]) for r in rows if key in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=key, lw=1.5 if key == "loss" else 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    if keys:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no losses logged", ha="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def _colour(k: int) -> np.ndarray:
    rng = np.random.default_rng(k * 7919 + 13)
    return rng.uniform(60, 255, 3)


def proxy_overlays(
    proxy: Coco,
    out_png: str | Path,
    *,
    gt: Coco | None = None,
    n_images: int = 12,
    drop_threshold: float = 0.95,
) -> None:
    """A grid: per image, the image with its boxes, the proxy masks (kept: coloured, dropped:
    red with the confidence), and the true masks when known."""
    from boxcaseg.data.images import load_rgb
    from boxcaseg.masks import segmentation_to_mask

    plt = _plt()
    images = proxy["images"][:n_images]
    shown = {img["id"]: [] for img in images}  # one pass over the annotations, not one per image
    for ann in proxy["annotations"]:
        if ann["image_id"] in shown and not ann.get("iscrowd"):
            shown[ann["image_id"]].append(ann)
    wanted = {a["id"] for anns in shown.values() for a in anns}
    gt_anns = {a["id"]: a for a in (gt or {}).get("annotations", []) if a["id"] in wanted}
    cols = 3 if gt else 2
    fig, axes = plt.subplots(
        max(1, len(images)), cols, figsize=(3 * cols, 3 * max(1, len(images))), squeeze=False
    )
    for row, img in enumerate(images):
        rgb = load_rgb(image_path(proxy, img)).astype(np.float64)
        anns = shown[img["id"]]
        h, w = img["height"], img["width"]
        proxy_vis, truth_vis = rgb.copy(), rgb.copy()
        axes[row, 0].imshow(rgb.astype(np.uint8))
        for k, ann in enumerate(anns):
            x, y, bw, bh = ann["bbox"]
            kept = ann.get("confidence", 1.0) > drop_threshold
            colour = _colour(k) if kept else np.array([255.0, 0, 0])
            mask = segmentation_to_mask(ann["segmentation"], h, w)
            proxy_vis[mask] = 0.45 * proxy_vis[mask] + 0.55 * colour
            for ax in axes[row]:
                ax.add_patch(
                    plt.Rectangle((x - 0.5, y - 0.5), bw, bh, fill=False, lw=1, ec=colour / 255)
                )
            axes[row, 1].text(
                x,
                y,
                f"{ann.get('confidence', 1.0):.2f}",
                fontsize=6,
                color="white",
                backgroundcolor=(0, 0, 0, 0.5),
                va="bottom",
            )
            if gt and ann["id"] in gt_anns:
                tmask = segmentation_to_mask(gt_anns[ann["id"]]["segmentation"], h, w)
                truth_vis[tmask] = 0.45 * truth_vis[tmask] + 0.55 * _colour(k)
        axes[row, 1].imshow(proxy_vis.astype(np.uint8))
        if gt:
            axes[row, 2].imshow(truth_vis.astype(np.uint8))
        for ax in axes[row]:
            ax.set_axis_off()
    titles = [
        "image + boxes",
        f"proxy masks (red: dropped, conf <= {drop_threshold})",
        "true masks",
    ]
    for c in range(cols):
        axes[0, c].set_title(titles[c], fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=72)
    plt.close(fig)


def dataset_summary(summary: dict[str, Any], out_png: str | Path) -> None:
    """Instances per class and split, with the image and salient counts in the title."""
    plt = _plt()
    splits = summary["splits"]
    classes = sorted({c for s in splits.values() for c in s.get("per_category", {})})
    fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(classes) + 3), 4))
    width = 0.8 / max(1, len(splits))
    for i, (name, s) in enumerate(splits.items()):
        counts = [s.get("per_category", {}).get(c, 0) for c in classes]
        ax.bar(
            np.arange(len(classes)) + i * width,
            counts,
            width,
            label=f"{name}: {s['images']} images, {s['annotations']} boxes",
        )
    ax.set_xticks(np.arange(len(classes)) + width * (len(splits) - 1) / 2)
    ax.set_xticklabels(classes, rotation=60 if len(classes) > 8 else 0, fontsize=7, ha="right")
    ax.set_ylabel("instances")
    salient = summary.get("salient") or {}
    ax.set_title(
        f"box-supervised instances per class; salient set: {salient.get('pairs', 0)} pairs"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def format_cell(value: Any) -> str:
    """A table cell as the Markdown summary and the PNG tables show it: floats to 2 decimals,
    missing values as '-'."""
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def results_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], out_png: str | Path, title: str
) -> None:
    """A table as a picture (numbers rounded to 2 decimals, None shown as '-')."""
    plt = _plt()

    cells = [[format_cell(r.get(c)) for c in columns] for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(columns)), 0.5 + 0.4 * (len(rows) + 1)))
    ax.set_axis_off()
    table = ax.table(cellText=cells, colLabels=list(columns), loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.auto_set_column_width(col=list(range(len(columns))))
    table.scale(1, 1.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def quality_breakdown(qualities: dict[str, dict[str, Any]], out_png: str | Path) -> None:
    """Where the masks beat their boxes: mean IoU with the true masks by how much of its box an
    object fills and by COCO object size (the box, then each mask set of ``qualities``, name ->
    a quality report of Stage 4: ``proxy``, ``grabcut``), and per class the proxy masks' mIoU
    minus the box's."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), gridspec_kw={"width_ratios": [1, 1, 2]})
    first = next(iter(qualities.values()))
    for ax, key, title in (
        (axes[0], "by_fill", "by fill (true mask area / box area)"),
        (axes[1], "by_size", "by object size (COCO)"),
    ):
        bins = first.get(key) or []
        series = [("box", "box", first)] + [
            (name, "proxy", quality) for name, quality in qualities.items()
        ]
        width = 0.8 / len(series)
        for k, (label, column, quality) in enumerate(series):
            values = [row[f"mean_{column}_iou"] or 0.0 for row in quality.get(key) or []]
            ax.bar(np.arange(len(values)) + (k - (len(series) - 1) / 2) * width, values, width,
                   label=label)  # fmt: skip
        ax.set_xticks(np.arange(len(bins)))
        ax.set_xticklabels([f"{row['bin']}\nn={row['instances']}" for row in bins], fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("mean IoU with the true mask")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    proxy = qualities.get("proxy", first)
    per_class = proxy.get("proxy", {}).get("per_class", {})
    box = proxy.get("box_as_mask", {}).get("per_class", {})
    diffs = sorted(((per_class[c] - box[c]) * 100, c) for c in per_class if c in box)
    ax = axes[2]
    ax.bar(np.arange(len(diffs)), [d for d, _ in diffs],
           color=["tab:red" if d < 0 else "tab:green" for d, _ in diffs])  # fmt: skip
    ax.set_xticks(np.arange(len(diffs)))
    ax.set_xticklabels([c for _, c in diffs], rotation=90, fontsize=max(4, 9 - len(diffs) // 12))
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("proxy minus box, mIoU points")
    ax.set_title("per class: proxy masks against their boxes", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
