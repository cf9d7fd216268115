"""Stage 4, merge and drop (docs/method.md, Stage 4): one image's proxy masks made consistent.

- Merge: instances are painted into one label map in DESCENDING box area, so smaller boxes are
  painted last and win the pixels they share with larger ones; each instance's merged mask is
  the pixels carrying its label. Equal areas keep their input order (later paints last).
- Confidence: IoU between the tight box of the merged mask and the instance's true box; an
  empty (e.g. fully overwritten) mask scores 0.
- Drop: an instance is kept for the mask loss only when its confidence is above the threshold.
  Masks are never deleted; the decision is recorded next to them.

:func:`merge_and_score` works on full-image mask stacks (the reference); :func:`merge_and_score_rles`
gives the same masks and confidences from and to RLE, working on the masks' runs (what Stage 4
runs: its cost is that of the masks' outlines, not of the image size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from boxcaseg.masks import (
    counts_to_strings,
    masks_to_boxes,
    paired_box_iou,
    rle_counts_many,
    runs_to_boxes,
)


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


@dataclass(frozen=True)
class RleMergeResult:
    rles: list  # K JSON-ready compressed RLEs of the whole image, merged
    confidence: np.ndarray  # (K,) float
    kept: np.ndarray  # (K,) bool, confidence > threshold


def merge_and_score_rles(
    rles: list, gt_boxes: np.ndarray, height: int, width: int, drop_threshold: float
) -> RleMergeResult:
    """:func:`merge_and_score` on one image's RLE masks (pycocotools form: ``str``, ``bytes`` or
    list counts, of size (height, width)), equal to it pixel for pixel and in confidence,
    without decoding a pixel: see :func:`merge_and_score_many`."""
    k = len(rles)
    return merge_and_score_many(
        rles, gt_boxes, np.zeros(k, dtype=np.int64), [height], [width], drop_threshold
    )


def merge_and_score_many(
    rles: list,
    gt_boxes: np.ndarray,
    image: np.ndarray,
    heights: Sequence[int],
    widths: Sequence[int],
    drop_threshold: float,
) -> RleMergeResult:
    """:func:`merge_and_score` of many images at once, on RLE: instance ``i`` (mask ``rles[i]``,
    true box ``gt_boxes[i]``) lies in image ``image[i]`` of size ``(heights[j], widths[j])``.
    Each image is merged on its own, exactly as :func:`merge_and_score` merges it (same masks,
    pixel for pixel, same confidences), and nothing is decoded to pixels:

    an RLE is a list of runs along the image's flat column-major pixel line. The runs of ones
    of all masks cut that line into segments, each covered by a fixed set of instances; a
    segment goes to the covering instance painted last (the highest painting rank: descending
    box area, ties in input order), as the full-frame argmax gives each pixel; the segments an
    instance won are its merged mask's runs, hence its RLE and its tight box. The images are
    laid end to end on one line, so one pass of array operations merges them all: the work is
    that of the runs (about two per column a mask spans), in one batch, not of the pixels.
    """
    k = len(rles)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    image = np.asarray(image, dtype=np.int64)
    heights = np.asarray(heights, dtype=np.int64)
    widths = np.asarray(widths, dtype=np.int64)
    if k == 0:
        return RleMergeResult(rles=[], confidence=np.zeros(0), kept=np.zeros(0, dtype=bool))
    sizes_given = np.array([rle["size"] for rle in rles], dtype=np.int64).reshape(k, 2)
    wrong = np.flatnonzero(
        (sizes_given[:, 0] != heights[image]) | (sizes_given[:, 1] != widths[image])
    )
    if wrong.size:
        i = int(wrong[0])
        raise ValueError(
            f"RLE of size {tuple(rles[i]['size'])} in an image of size "
            f"{(int(heights[image[i]]), int(widths[image[i]]))}"
        )
    n_pixels = (heights * widths)[image]  # per instance
    base = np.concatenate(([0], np.cumsum(heights * widths)))[
        image
    ]  # its image's place on the line

    # runs of ones of every mask: [start, end) on its image's line, then on the common line
    counts, offsets = rle_counts_many(rles)
    sizes = np.diff(offsets)
    local = np.arange(len(counts)) - np.repeat(offsets[:-1], sizes)
    total = np.cumsum(counts)
    run_end = total - np.repeat(np.concatenate(([0], total))[offsets[:-1]], sizes)
    ones = local % 2 == 1  # counts[1], counts[3], ... of each RLE are its runs of ones
    owner = np.repeat(np.arange(k), sizes)[ones]
    ends = np.minimum(run_end[ones], n_pixels[owner])
    starts = np.minimum(run_end[ones] - counts[ones], n_pixels[owner])
    keep = ends > starts  # empty runs (non-canonical RLEs) change nothing
    owner, starts, ends = (
        owner[keep],
        starts[keep] + base[owner[keep]],
        ends[keep] + base[owner[keep]],
    )

    # painting rank within each image: descending box area, ties in input order (paint_order)
    area = gt_boxes[:, 2] * gt_boxes[:, 3]
    order = np.lexsort((np.arange(k), -area, image))
    image_sorted = image[order]
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k) - np.searchsorted(image_sorted, image_sorted, side="left") + 1

    block_owner = block_start = block_end = np.zeros(0, dtype=np.int64)
    if len(starts):
        cuts = np.sort(np.concatenate([starts, ends]))
        cuts = cuts[
            np.concatenate(([True], cuts[1:] != cuts[:-1]))
        ]  # segment j: [cuts[j], cuts[j+1])
        first_seg = np.searchsorted(cuts, starts)
        n_seg = np.searchsorted(cuts, ends) - first_seg  # segments each run covers (>= 1)
        seg = np.repeat(first_seg - np.cumsum(n_seg) + n_seg, n_seg) + np.arange(int(n_seg.sum()))
        best = np.zeros(len(cuts), dtype=np.int64)  # the covering instance with the top rank
        np.maximum.at(best, seg, np.repeat(rank[owner] * k + owner, n_seg))
        winner = np.where(best > 0, best % k, -1)  # the last segment is never covered
        first = np.flatnonzero(np.concatenate(([True], winner[1:] != winner[:-1])))
        won = winner[first] >= 0  # blocks of segments won by one instance: its merged runs
        block_owner = winner[first][won]
        block_start = cuts[first][won] - base[block_owner]
        block_end = cuts[np.concatenate((first[1:], [len(cuts) - 1]))][won] - base[block_owner]

    tight = runs_to_boxes(block_start, block_end, block_owner, k, heights[image][block_owner])
    conf = paired_box_iou(tight, gt_boxes)

    # each merged mask's run lengths: [start_1 - 0, end_1 - start_1, ..., n_pixels - end_last]
    # (the last run of zeros left out when it is empty), then all strings in one pass
    order = np.argsort(block_owner, kind="stable")  # each instance's runs, in pixel order
    block_owner, block_start, block_end = block_owner[order], block_start[order], block_end[order]
    n_runs = np.bincount(block_owner, minlength=k)
    first_run = np.concatenate(([0], np.cumsum(n_runs)))
    points_at = np.concatenate(([0], np.cumsum(2 * n_runs + 2)))  # 0, the runs, n_pixels
    points = np.zeros(points_at[-1], dtype=np.int64)
    points[points_at[1:] - 1] = n_pixels
    within = np.arange(len(block_owner)) - first_run[block_owner]
    points[points_at[block_owner] + 1 + 2 * within] = block_start
    points[points_at[block_owner] + 2 + 2 * within] = block_end
    steps = np.diff(points)
    last_zeros = points_at[1:] - 2  # index in steps of each mask's last run of zeros
    keep = np.ones(len(steps), dtype=bool)
    keep[points_at[1:-1] - 1] = False  # the step from one mask's end to the next one's start
    keep[last_zeros[(steps[last_zeros] == 0) & (n_runs > 0)]] = False
    new_counts = steps[keep]
    lengths = 2 * n_runs + 1 - ((steps[last_zeros] == 0) & (n_runs > 0))
    strings = counts_to_strings(new_counts, np.concatenate(([0], np.cumsum(lengths))))
    hw = np.stack([heights[image], widths[image]], axis=1).tolist()
    out = [{"size": size, "counts": text} for size, text in zip(hw, strings)]
    return RleMergeResult(rles=out, confidence=conf, kept=conf > drop_threshold)
