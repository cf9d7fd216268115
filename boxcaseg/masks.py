"""Masks, boxes and RLE: small typed numpy helpers over pycocotools.

Conventions used everywhere in BoxCaseg:
- a box is COCO ``[x, y, w, h]`` in pixels, float; ``x + w`` is the right edge (exclusive);
- a mask is a ``(H, W)`` bool array in the image frame;
- an RLE is pycocotools' compressed form with ``counts`` as ``str`` (JSON-ready).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

Box = Sequence[float]  # [x, y, w, h]


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode one (H, W) mask as a JSON-ready compressed RLE."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """Decode a compressed or uncompressed RLE to an (H, W) bool mask."""
    if isinstance(rle.get("counts"), list):  # uncompressed RLE (e.g. COCO crowd regions)
        h, w = rle["size"]
        rle = mask_utils.frPyObjects(rle, h, w)
    elif isinstance(rle["counts"], str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, uncompressed or compressed RLE) as an (H, W) mask."""
    if isinstance(segmentation, list):
        if not segmentation:
            return np.zeros((height, width), dtype=bool)
        rles = mask_utils.frPyObjects(segmentation, height, width)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    if isinstance(segmentation, dict):
        mask = rle_decode(segmentation)
        if mask.shape != (height, width):
            raise ValueError(f"RLE of size {mask.shape} in an image of size {(height, width)}")
        return mask
    raise TypeError(f"unknown segmentation type {type(segmentation).__name__}")


def box_to_mask(box: Box, height: int, width: int) -> np.ndarray:
    """Rasterise a box as a filled mask, the way pycocotools rasterises polygons."""
    rle = mask_utils.frPyObjects(np.asarray([box], dtype=np.float64), height, width)
    return mask_utils.decode(rle)[..., 0].astype(bool)


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight ``[x, y, w, h]`` around a mask (right/bottom exclusive); zeros for an empty mask."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return np.zeros(4, dtype=np.float64)
    return np.array([xs[0], ys[0], xs[-1] + 1 - xs[0], ys[-1] + 1 - ys[0]], dtype=np.float64)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Vectorised :func:`mask_to_box` over a (K, H, W) stack -> (K, 4)."""
    k = masks.shape[0]
    boxes = np.zeros((k, 4), dtype=np.float64)
    if k == 0:
        return boxes
    rows = masks.any(axis=2)  # (K, H)
    cols = masks.any(axis=1)  # (K, W)
    nonempty = rows.any(axis=1)
    h, w = masks.shape[1:]
    y0 = rows.argmax(axis=1)
    y1 = h - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = w - cols[:, ::-1].argmax(axis=1)
    boxes[:, 0], boxes[:, 1] = x0, y0
    boxes[:, 2], boxes[:, 3] = x1 - x0, y1 - y0
    boxes[~nonempty] = 0.0
    return boxes


def paired_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a[i]`` with box ``b[i]`` for (K, 4) xywh arrays; 0 where a box is empty."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = ix * iy
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, M) IoU between two sets of xywh boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(
        np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
        - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(
        np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
        - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks of the same shape; 1.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)
