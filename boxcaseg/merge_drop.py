"""Stage 4, merge and drop (docs/method.md, Stage 4), on files: what the workflow's ``merge_drop``
rule runs, over the pure per-image functions of :mod:`boxcaseg.merge`.

Stage 4 reads Stage 3's ``proxy_raw.json``, merges per image, scores and marks drops, and
writes ``proxy_masks.json``: the box training file plus an RLE ``segmentation``, a
``confidence`` and a ``proxy_kept`` flag per annotation, the drop threshold recorded in
``info``. Masks are never deleted. Crowd / ignore regions keep their box as mask (mmdet ignores
them in training). The GrabCut baseline's masks go through the same merge
(:mod:`boxcaseg.baselines`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from boxcaseg.data.coco import Coco, annotations_by_image, load_json, save_json
from boxcaseg.masks import box_rle, rle_iou, segmentation_to_rle
from boxcaseg.merge import merge_and_score_many

MERGE_CHUNK = 1_000  # instances merged in one batch: few numpy calls per instance, small
# temporaries (at 20k per batch the run arrays of noisy masks took a GB)


def merge_proxy_file(
    raw: Coco,
    drop_threshold: float,
    description: str = "proxy masks (BoxCaseg Stage 4: merged, scored)",
    *,
    inplace: bool = False,
    resolve_overlaps: bool = True,
) -> Coco:
    """Stage 4 over a whole file: merge per image, score, flag; returns the new COCO dict.
    ``resolve_overlaps`` False keeps each instance's own mask (overlaps stay; Mask R-CNN trains
    each RoI's mask on its own): every instance is scored as if alone in its image.

    ``raw`` is left as it is: the result holds new annotation dicts (sharing the unchanged
    values), or, with ``inplace``, ``raw``'s own annotations are updated (no second set of
    annotations in memory). The masks are merged on their RLE runs, many images per batch
    (:func:`boxcaseg.merge.merge_and_score_many`), equal to the full-frame merge per image.
    """
    images = {img["id"]: img for img in raw["images"]}
    annotations = raw["annotations"] if inplace else [dict(a) for a in raw["annotations"]]
    batch: list[tuple[dict[str, Any], int]] = []  # (annotation, its image's place in `sizes`)
    sizes: list[tuple[int, int]] = []

    def flush() -> None:
        if not batch:
            return
        result = merge_and_score_many(
            [segmentation_to_rle(a["segmentation"], *sizes[j]) for a, j in batch],
            np.array([a["bbox"] for a, _ in batch], dtype=np.float64).reshape(-1, 4),
            np.array([j for _, j in batch], dtype=np.int64),
            [h for h, _ in sizes],
            [w for _, w in sizes],
            drop_threshold,
        )
        for (ann, _), rle, conf, kept in zip(
            batch, result.rles, result.confidence.tolist(), result.kept.tolist()
        ):
            # `area` stays the box's (Stage 1): mmdet's CocoDataset skips area <= 0, and an
            # instance whose merged mask is empty must still train the RPN, box and class heads
            ann["segmentation"] = rle
            ann["confidence"] = round(conf, 6)
            ann["proxy_kept"] = kept
        batch.clear()
        sizes.clear()

    for image_id, anns in annotations_by_image(annotations).items():
        img = images[image_id]
        h, w = img["height"], img["width"]
        inst = []
        for ann in anns:
            if ann.get("iscrowd", 0):
                ann["segmentation"] = box_rle(ann["bbox"], h, w)
                ann["confidence"], ann["proxy_kept"] = 0.0, False
            else:
                inst.append(ann)
        if inst:
            if len(batch) + len(inst) > MERGE_CHUNK:
                flush()
            if resolve_overlaps:  # one painting per image
                batch.extend((ann, len(sizes)) for ann in inst)
                sizes.append((h, w))
            else:  # each instance alone in a frame of its image's size: nothing to merge
                for ann in inst:
                    batch.append((ann, len(sizes)))
                    sizes.append((h, w))
    flush()
    info = {
        **raw.get("info", {}),
        "drop_threshold": drop_threshold,
        "resolve_overlaps": resolve_overlaps,
        "masks": description,
    }
    if inplace:
        raw["info"] = info
        return raw
    return {**raw, "info": info, "annotations": annotations}


def proxy_quality(proxy: Coco, gt: Coco, drop_threshold: float) -> dict[str, Any]:
    """Proxy masks vs true masks: mean IoU overall, per class and by confidence bin, the same
    for the box-as-mask baseline, and how good the drop decision is (kept vs dropped IoU);
    broken down by how much of its box the object fills (``by_fill``) and by COCO object size
    (``by_size``), for all instances and the kept ones. IoUs are computed on RLE (pycocotools),
    exactly the pixel counts' intersection / union."""
    from pycocotools import mask as mask_utils

    from boxcaseg.metrics import (
        FILL_EDGES,
        SIZE_EDGES,
        SIZE_NAMES,
        binned_ious,
        confidence_bins,
        miou_star,
        suggest_drop_threshold,
    )

    gt_anns = {a["id"]: a for a in gt["annotations"]}
    images = {img["id"]: img for img in gt["images"]}
    names = {c["id"]: c["name"] for c in gt["categories"]}
    n = len(proxy["annotations"])
    cats = np.zeros(n, dtype=np.int64)
    conf, iou, box_iou, area, fill = (np.zeros(n, dtype=np.float64) for _ in range(5))
    rows = 0
    for ann in proxy["annotations"]:
        truth_ann = gt_anns.get(ann["id"])
        if ann.get("iscrowd", 0) or truth_ann is None or not truth_ann.get("segmentation"):
            continue
        img = images[ann["image_id"]]
        h, w = img["height"], img["width"]
        truth = segmentation_to_rle(truth_ann["segmentation"], h, w)
        cats[rows], conf[rows] = ann["category_id"], ann["confidence"]
        iou[rows] = rle_iou(segmentation_to_rle(ann["segmentation"], h, w), truth)
        box = box_rle(ann["bbox"], h, w, as_bytes=True)
        box_iou[rows] = rle_iou(box, truth)
        area[rows] = float(mask_utils.area(truth))
        fill[rows] = area[rows] / max(float(mask_utils.area(box)), 1.0)
        rows += 1
    if not rows:
        return {"instances": 0}
    cats, conf, iou, box_iou = cats[:rows], conf[:rows], iou[:rows], box_iou[:rows]
    kept = conf > drop_threshold
    both = {"proxy": iou, "box": box_iou}
    fill_names = [f"[{lo:.1f}, {hi:.1f})" if hi <= 1 else f"over {lo:.1f}"
                  for lo, hi in zip(FILL_EDGES[:-1], FILL_EDGES[1:])]  # fmt: skip
    return {
        "instances": rows,
        "drop_threshold": drop_threshold,
        "proxy": miou_star(iou, cats, names),
        "box_as_mask": miou_star(box_iou, cats, names),
        "kept_fraction": float(kept.mean()),
        "mean_iou_kept": float(iou[kept].mean()) if kept.any() else None,
        "mean_iou_dropped": float(iou[~kept].mean()) if (~kept).any() else None,
        "by_confidence": (bins := confidence_bins(conf, iou, box_iou)),
        "suggested_drop_threshold": suggest_drop_threshold(bins),
        "by_fill": binned_ious(fill[:rows], FILL_EDGES, fill_names, both, kept),
        "by_size": binned_ious(area[:rows], SIZE_EDGES, SIZE_NAMES, both, kept),
    }


def run_merge(
    raw_json: str | Coco,
    out_json: str,
    drop_threshold: float,
    *,
    gt_json: str | None = None,
    quality_json: str | None = None,
    description: str | None = None,
    overlays_png: str | None = None,
    overlay_images: int = 12,
    resolve_overlaps: bool = True,
) -> dict[str, Any]:
    """Stage 4 on files: merge + score + flag ``raw_json`` (a path, or the dict itself), write
    it, and grade it against the true masks when there are any; with ``overlays_png``, draw the
    first ``overlay_images`` images' masks from what is in memory (nothing is read twice).
    A dict passed in is left as it is; a file read here is merged in place (one copy)."""
    from_file = isinstance(raw_json, (str, Path))
    raw = load_json(raw_json) if from_file else raw_json
    merged = merge_proxy_file(
        raw,
        drop_threshold,
        *([description] if description else []),
        inplace=from_file,
        resolve_overlaps=resolve_overlaps,
    )
    del raw
    save_json(merged, out_json)
    summary: dict[str, Any] = {
        "instances": sum(1 for a in merged["annotations"] if not a.get("iscrowd", 0)),
        "kept": sum(1 for a in merged["annotations"] if a.get("proxy_kept")),
        "resolve_overlaps": resolve_overlaps,
    }
    gt = load_json(gt_json) if gt_json and Path(gt_json).is_file() else None
    if gt is not None:
        summary["quality"] = proxy_quality(merged, gt, drop_threshold)
    if quality_json:
        save_json(summary, quality_json, indent=1)
    if overlays_png:
        from boxcaseg.figures import proxy_overlays

        proxy_overlays(
            merged, overlays_png, gt=gt, n_images=overlay_images, drop_threshold=drop_threshold
        )
    return summary


def merge_table_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's Stage 4 table from :func:`run_merge`'s summary: the proxy masks (kept and
    dropped) and the box-as-mask baseline against the true masks, when there are any."""
    quality = summary.get("quality") or {}
    return [
        {
            "masks": "proxy (BoxCaseg)",
            "mIoU*": quality.get("proxy", {}).get("miou_star"),
            "mean IoU": quality.get("proxy", {}).get("mean_instance_iou"),
            "kept IoU": quality.get("mean_iou_kept"),
            "dropped IoU": quality.get("mean_iou_dropped"),
            "kept": summary["kept"],
            "instances": summary["instances"],
        },
        {
            "masks": "box as mask",
            "mIoU*": quality.get("box_as_mask", {}).get("miou_star"),
            "mean IoU": quality.get("box_as_mask", {}).get("mean_instance_iou"),
        },
    ]
