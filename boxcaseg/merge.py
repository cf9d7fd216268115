"""Stage 4, merge and drop (method.md, Stage 4): one image's proxy masks made consistent.

- Merge: instances are painted into one label map in DESCENDING box area, so smaller boxes are
  painted last and win the pixels they share with larger ones; each instance's merged mask is
  the pixels carrying its label. Equal areas keep their input order (later paints last).
- Confidence: IoU between the tight box of the merged mask and the instance's true box; an
  empty (e.g. fully overwritten) mask scores 0.
- Drop: an instance is kept for the mask loss only when its confidence is above the threshold.
  Masks are never deleted; the decision is recorded next to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boxcaseg.masks import masks_to_boxes, paired_box_iou


def paint_order(boxes: np.ndarray) -> np.ndarray:
    """Indices in painting order: descending box area, stable for ties."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    areas = boxes[:, 2] * boxes[:, 3]
    return np.argsort(-areas, kind="stable")


def merge_instance_masks(masks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Resolve overlaps between a (K, H, W) stack of proxy masks; returns the merged stack.

    Vectorised: the pixel goes to the covering instance painted last, i.e. the one with the
    highest painting rank, found by one argmax over the stack.
    """
    masks = np.asarray(masks, dtype=bool)
    k = masks.shape[0]
    if k == 0:
        return masks.copy()
    rank = np.empty(k, dtype=np.int32)
    rank[paint_order(boxes)] = np.arange(1, k + 1, dtype=np.int32)
    dtype = np.uint8 if k < 255 else np.int32
    priority = masks.astype(dtype) * rank.astype(dtype)[:, None, None]  # 0 = not covering
    winner = priority.argmax(axis=0)  # (H, W)
    ys, xs = np.nonzero(masks.any(axis=0))
    merged = np.zeros_like(masks)
    merged[winner[ys, xs], ys, xs] = True
    return merged


def confidences(merged_masks: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """IoU of each merged mask's tight box with its true box (0 for an empty mask)."""
    tight = masks_to_boxes(np.asarray(merged_masks, dtype=bool))
    return paired_box_iou(tight, gt_boxes)


@dataclass(frozen=True)
class MergeResult:
    masks: np.ndarray  # (K, H, W) bool, merged
    confidence: np.ndarray  # (K,) float
    kept: np.ndarray  # (K,) bool, confidence > threshold


def merge_and_score(masks: np.ndarray, gt_boxes: np.ndarray, drop_threshold: float) -> MergeResult:
    """Merge one image's proxy masks, score each against its box, mark the ones to drop."""
    merged = merge_instance_masks(masks, gt_boxes)
    conf = confidences(merged, gt_boxes)
    return MergeResult(masks=merged, confidence=conf, kept=conf > drop_threshold)
