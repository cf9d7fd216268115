"""Quality measures: mIoU* (docs/method.md), proxy-mask quality, and COCO AP through pycocotools."""

from __future__ import annotations

import contextlib
import io
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

COCO_STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def miou_star(
    ious: Sequence[float], category_ids: Sequence[int], names: dict[int, str] | None = None
) -> dict[str, Any]:
    """mIoU*: IoU per instance, mean per class, then mean over the classes present."""
    per_class: dict[int, list[float]] = defaultdict(list)
    for iou, cat in zip(ious, category_ids, strict=True):
        per_class[int(cat)].append(float(iou))
    class_means = {cat: float(np.mean(v)) for cat, v in sorted(per_class.items())}
    return {
        "miou_star": float(np.mean(list(class_means.values()))) if class_means else 0.0,
        "mean_instance_iou": float(np.mean(ious)) if len(ious) else 0.0,
        "instances": len(ious),
        "per_class": {(names or {}).get(cat, str(cat)): v for cat, v in class_means.items()},
    }


def confidence_bins(
    confidence: np.ndarray,
    ious: np.ndarray,
    box_ious: np.ndarray | None = None,
    edges: Sequence[float] = (0.0, 0.5, 0.8, 0.9, 0.95, 1.0 + 1e-9),
) -> list[dict[str, Any]]:
    """Mean IoU vs truth of proxy masks grouped by their drop-score bin (and of the same
    instances' boxes filled as masks, when ``box_ious`` is given)."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (confidence >= lo) & (confidence < hi)
        row = {
            "bin": f"[{lo:.2f}, {min(hi, 1.0):.2f}]" if hi > 1 else f"[{lo:.2f}, {hi:.2f})",
            "lower": float(lo),
            "instances": int(sel.sum()),
            "mean_iou": float(ious[sel].mean()) if sel.any() else None,
        }
        if box_ious is not None:
            row["mean_box_iou"] = float(box_ious[sel].mean()) if sel.any() else None
        rows.append(row)
    return rows


# How much of its box an object fills (true mask area / box area): under half (thin or hollow
# shapes), half to 70%, over 70% (compact objects, for which the box itself is a good mask).
# (a mask larger than its rasterised box, a polygon past the box edge, counts in the last bin)
FILL_EDGES = (0.0, 0.5, 0.7, float("inf"))
# COCO's object sizes, on the true mask's area in the image's pixels (pycocotools' areaRng)
SIZE_EDGES = (0.0, 32.0**2, 96.0**2, float("inf"))
SIZE_NAMES = ("small", "medium", "large")


def binned_ious(
    values: np.ndarray,
    edges: Sequence[float],
    names: Sequence[str],
    ious: dict[str, np.ndarray],
    kept: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Mean IoU vs truth of each set of masks in ``ious`` (name -> per-instance IoUs, e.g.
    proxy and box) over the instances whose ``values`` fall in each bin [edge, next edge);
    with ``kept``, also over the kept instances of the bin (what trains the mask head)."""
    rows = []
    for name, lo, hi in zip(names, edges[:-1], edges[1:]):
        sel = (values >= lo) & (values < hi)
        row: dict[str, Any] = {"bin": name, "instances": int(sel.sum())}
        for key, iou in ious.items():
            row[f"mean_{key}_iou"] = float(iou[sel].mean()) if sel.any() else None
        if kept is not None:
            both = sel & kept
            row["kept"] = int(both.sum())
            for key, iou in ious.items():
                row[f"kept_mean_{key}_iou"] = float(iou[both].mean()) if both.any() else None
        rows.append(row)
    return rows


def suggest_drop_threshold(bins: list[dict[str, Any]]) -> float | None:
    """The drop threshold a run's own confidence-vs-IoU data suggests: the lowest bin edge
    above which every (non-empty) bin's proxy masks beat the same instances' boxes filled as
    masks, so that what trains the mask head is better than the box would be. None when even
    the most confident bin does not beat its boxes (then keep the paper's 0.95)."""
    suggestion = None
    for row in reversed(bins):
        if not row["instances"]:
            continue
        if row["mean_iou"] < row["mean_box_iou"]:
            break
        suggestion = row["lower"]
    return suggestion


def coco_evaluate(
    gt_json: str, results: str | list[dict[str, Any]], iou_type: str
) -> dict[str, float]:
    """pycocotools COCOeval on a results file (or list); returns AP, AP50, AP75, APs/m/l in %.

    Returns zeros (not an exception) when there are no detections at all, which happens with a
    model trained for a handful of iterations.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_json)
    if isinstance(results, str):
        import json

        with open(results, encoding="utf-8") as fh:
            results = json.load(fh)
    if not results:
        return {name: 0.0 for name in COCO_STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # stats are -1 where a size range has no ground truth; report them as None
    return {
        name: (round(float(v) * 100, 2) if v >= 0 else None)
        for name, v in zip(COCO_STAT_NAMES, ev.stats[:6])
    }
