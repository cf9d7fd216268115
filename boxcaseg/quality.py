"""Proxy-mask quality against true masks: per-instance IoU, mIoU*, and the box-as-mask
baseline (the whole box predicted as foreground)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from boxcaseg.masks import box_to_mask, mask_iou, segmentation_to_mask
from boxcaseg.metrics import miou_star


def instance_ious(
    gt_coco: dict[str, Any], predictions: Iterable[tuple[int, list[int], np.ndarray]]
) -> dict[str, np.ndarray]:
    """IoU vs the true mask of every predicted instance, and of its box-as-mask baseline.

    ``predictions`` yields ``(image_id, ann_ids, masks)`` as :func:`boxcaseg.proxy_inference.iter_proxy_masks`
    does. Returns arrays aligned by instance: ann_id, category_id, iou, box_iou.
    """
    anns = {a["id"]: a for a in gt_coco["annotations"]}
    images = {img["id"]: img for img in gt_coco["images"]}
    rows: list[tuple[int, int, float, float]] = []
    for image_id, ann_ids, masks in predictions:
        img = images[image_id]
        h, w = img["height"], img["width"]
        for ann_id, mask in zip(ann_ids, masks):
            ann = anns[ann_id]
            truth = segmentation_to_mask(ann["segmentation"], h, w)
            rows.append(
                (
                    ann_id,
                    ann["category_id"],
                    mask_iou(mask, truth),
                    mask_iou(box_to_mask(ann["bbox"], h, w), truth),
                )
            )
    arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return {
        "ann_id": arr[:, 0].astype(np.int64),
        "category_id": arr[:, 1].astype(np.int64),
        "iou": arr[:, 2],
        "box_iou": arr[:, 3],
    }


def miou_star_report(gt_coco: dict[str, Any], ious: dict[str, np.ndarray]) -> dict[str, Any]:
    """mIoU* of the predictions and of the box-as-mask baseline, per class and overall."""
    names = {c["id"]: c["name"] for c in gt_coco["categories"]}
    return {
        "model": miou_star(ious["iou"], ious["category_id"], names),
        "box_as_mask": miou_star(ious["box_iou"], ious["category_id"], names),
    }
