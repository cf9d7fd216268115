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
    ix = np.clip(
        np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None
    )
    iy = np.clip(
        np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None
    )
    inter = ix * iy
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(K, M) IoU between two sets of xywh boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(
        np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
        - np.maximum(a[:, None, 0], b[None, :, 0]),
        0,
        None,
    )
    iy = np.clip(
        np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
        - np.maximum(a[:, None, 1], b[None, :, 1]),
        0,
        None,
    )
    inter = ix * iy
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks of the same shape; 1.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


# --- RLE without full-image masks -----------------------------------------------------------------
#
# A COCO RLE runs down the columns of the whole image (column-major), starting with a run of
# zeros. The helpers below read the run lengths of RLEs (many at once), work on the runs of
# ones, and write a window's mask as the whole image's RLE, so that the work is that of the
# runs or of the window, never that of the full frame. The RLE strings they give are
# pycocotools' own, character for character (the string itself is written by pycocotools).


def _compressed_bytes(rle: dict[str, Any]) -> bytes | None:
    counts = rle["counts"]
    if isinstance(counts, str):
        return counts.encode("ascii")
    if isinstance(counts, bytes):
        return counts
    return None  # uncompressed (list of counts)


def rle_counts_many(rles: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The run lengths (int64) of several RLEs (compressed: ``str`` or ``bytes`` counts, or
    uncompressed: list counts), concatenated, and the offsets of each one's runs (K + 1): RLE
    ``k``'s counts are ``counts[offsets[k]:offsets[k + 1]]``, zeros, ones, zeros, ... down the
    columns of the whole image. All compressed strings are decoded in one vectorised pass."""
    raw = [_compressed_bytes(rle) for rle in rles]
    if any(r is None for r in raw):  # uncompressed ones: decode the rest per RLE
        parts = [
            np.asarray(rle["counts"], dtype=np.int64)
            if r is None
            else rle_counts_many([{"counts": r}])[0]
            for rle, r in zip(rles, raw)
        ]
        offsets = np.concatenate(([0], np.cumsum([len(p) for p in parts]))).astype(np.int64)
        return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), offsets
    char_offsets = np.concatenate(([0], np.cumsum([len(r) for r in raw]))).astype(np.int64)
    joined = b"".join(raw)
    if not joined:
        return np.zeros(0, np.int64), np.zeros(len(rles) + 1, np.int64)
    # pycocotools' string: each count is a little-endian group of 5-bit digits (char - 48), with
    # bit 0x20 set on all but the group's last char, whose bit 0x10 is the sign; from the third
    # count of an RLE on, the value stored is the difference to the count two places earlier.
    chars = np.frombuffer(joined, dtype=np.uint8).astype(np.int64) - 48
    ends = np.flatnonzero((chars & 0x20) == 0)
    starts = np.concatenate(([0], ends[:-1] + 1))
    digit = np.arange(len(chars)) - np.repeat(starts, ends - starts + 1)
    values = np.add.reduceat((chars & 0x1F) << (5 * digit), starts)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (digit[ends[negative]] + 1))
    offsets = np.searchsorted(ends, char_offsets, side="left").astype(np.int64)
    sizes = np.diff(offsets)
    local = np.arange(len(values)) - np.repeat(offsets[:-1], sizes)  # index within its RLE
    # undo the differences, x[m] += x[m - 2] for m > 2: running sums of each parity per RLE
    for parity, first in ((1, 1), (0, 2)):
        chain = (local % 2 == parity) & (local >= first)
        total = np.cumsum(np.where(chain, values, 0))
        before = np.concatenate(([0], total))[offsets[:-1]]  # the sums of the RLEs before
        values = np.where(chain, total - np.repeat(before, sizes), values)
    return values, offsets


def rle_counts(rle: dict[str, Any]) -> np.ndarray:
    """The run lengths (int64) of one RLE: see :func:`rle_counts_many`."""
    return rle_counts_many([rle])[0]


def counts_to_strings(counts: np.ndarray, offsets: np.ndarray) -> list[str]:
    """pycocotools' compressed RLE strings of several masks at once (the inverse of
    :func:`rle_counts_many`): mask ``k``'s run lengths are ``counts[offsets[k]:offsets[k+1]]``.
    The same characters as pycocotools' ``rleToString``, in one vectorised pass."""
    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    sizes = np.diff(offsets)
    local = np.arange(len(counts)) - np.repeat(offsets[:-1], sizes)
    values = counts.copy()
    later = np.flatnonzero(local > 2)  # from the third count on: the difference to m - 2
    values[later] -= counts[later - 2]
    # little-endian 5-bit digits, as few as hold the value in two's complement (pycocotools
    # stops once the rest is only the sign extension of the last digit's bit 0x10)
    length = np.ones(len(values), dtype=np.int64)
    for j in range(1, 7):  # 7 digits hold any 32-bit count and difference
        half = np.int64(1) << (5 * j - 1)
        length += (values < -half) | (values >= half)
    which = np.repeat(np.arange(len(values)), length)
    digit = np.arange(len(which)) - np.repeat(np.cumsum(length) - length, length)
    chars = ((values[which] >> (5 * digit)) & 0x1F) + 48
    chars[digit < length[which] - 1] += 0x20  # more digits follow
    text = chars.astype(np.uint8).tobytes().decode("ascii")
    ends = np.cumsum(length)
    bounds = np.concatenate(([0], ends))[offsets].tolist()
    return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def counts_to_rle(counts: np.ndarray, height: int, width: int) -> dict[str, Any]:
    """A JSON-ready compressed RLE (what :func:`rle_encode` writes) from run lengths."""
    rle = mask_utils.frPyObjects(
        {"counts": np.asarray(counts, dtype=np.uint32), "size": [height, width]}, height, width
    )
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def runs_to_counts(starts: np.ndarray, ends: np.ndarray, height: int, width: int) -> np.ndarray:
    """Run lengths of the image whose ones are the flat (column-major) runs ``[starts[i],
    ends[i])``, sorted, disjoint and not touching: pycocotools' runs for that mask."""
    bounds = np.empty(2 * len(starts) + 2, dtype=np.int64)
    bounds[0], bounds[-1] = 0, height * width
    bounds[1:-1:2], bounds[2:-1:2] = starts, ends
    counts = np.diff(bounds)
    if counts.size > 1 and counts[-1] == 0:  # ones up to the last pixel: no zeros after
        counts = counts[:-1]
    return counts


def runs_to_boxes(
    starts: np.ndarray, ends: np.ndarray, owner: np.ndarray, k: int, height: int | np.ndarray
) -> np.ndarray:
    """Tight ``[x, y, w, h]`` boxes (as :func:`masks_to_boxes`: zeros for an empty mask) of
    ``k`` masks given as flat runs of ones ``[starts[i], ends[i])`` of mask ``owner[i]``, in
    images of ``height`` (one, or one per run)."""
    boxes = np.zeros((k, 4), dtype=np.float64)
    keep = ends > starts
    if not keep.any():
        return boxes
    height = height[keep] if isinstance(height, np.ndarray) else height
    starts, last, owner = starts[keep], ends[keep] - 1, owner[keep]
    col0, col1 = starts // height, last // height
    across = col0 != col1  # a run across a column border holds a bottom and a top pixel
    y0 = np.where(across, 0, starts % height)
    y1 = np.where(across, height, last % height + 1)
    big = np.iinfo(np.int64).max
    lo_x, lo_y = np.full(k, big), np.full(k, big)
    hi_x, hi_y = np.full(k, -1), np.full(k, -1)
    np.minimum.at(lo_x, owner, col0)
    np.minimum.at(lo_y, owner, y0)
    np.maximum.at(hi_x, owner, col1 + 1)
    np.maximum.at(hi_y, owner, y1)
    some = hi_x >= 0
    boxes[some] = np.stack([lo_x, lo_y, hi_x - lo_x, hi_y - lo_y], axis=1)[some]
    return boxes


def window_to_counts(
    mask: np.ndarray, window: tuple[int, int, int, int], height: int, width: int
) -> np.ndarray:
    """Run lengths of the whole (height, width) image's mask that is ``mask`` inside
    ``window = (x0, y0, x1, y1)`` and zero outside: pycocotools' runs for that mask."""
    x0, y0, x1, y1 = window
    mask = np.asarray(mask, dtype=bool)
    rows = y1 - y0
    padded = np.zeros((x1 - x0, rows + 2), dtype=bool)  # one column of the window per row
    padded[:, 1:-1] = mask.T
    change = np.flatnonzero(padded[:, 1:] != padded[:, :-1])  # pairs: start, end per column
    col, row = np.divmod(change, rows + 1)
    pos = (x0 + col) * height + y0 + row
    if rows == height and pos.size > 2:  # a run that ends at a column's bottom and goes on at
        # the next column's top is one run: drop the end and the start between them
        joined = np.flatnonzero(pos[1:-1:2] == pos[2::2])
        if joined.size:
            pos = np.delete(pos, np.concatenate([2 * joined + 1, 2 * joined + 2]))
    return runs_to_counts(pos[0::2], pos[1::2], height, width)


def rle_encode_window(
    mask: np.ndarray, window: tuple[int, int, int, int], height: int, width: int
) -> dict[str, Any]:
    """:func:`rle_encode` of the (height, width) mask that is ``mask`` inside ``window`` and
    zero elsewhere, without building that mask; the same string."""
    return counts_to_rle(window_to_counts(mask, window, height, width), height, width)


def box_rle(box: Box, height: int, width: int, *, as_bytes: bool = False) -> dict[str, Any]:
    """:func:`rle_encode` of :func:`box_to_mask` straight from pycocotools' rasterisation (whose
    runs are already canonical: it merges empty runs); ``as_bytes`` keeps pycocotools' own form
    for its RLE operations."""
    rle = mask_utils.frPyObjects(np.asarray([box], dtype=np.float64), height, width)[0]
    if not as_bytes:
        rle["counts"] = rle["counts"].decode("ascii")
    return rle


def segmentation_to_rle(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """A COCO ``segmentation`` as a pycocotools RLE (``bytes`` counts) of the (height, width)
    image: what :func:`segmentation_to_mask` decodes, for pycocotools' RLE operations."""
    if isinstance(segmentation, list):
        if not segmentation:
            return {
                "size": [height, width],
                "counts": counts_to_rle([height * width], height, width)["counts"].encode(),
            }
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict):
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(
                f"RLE of size {tuple(segmentation['size'])} in an image of size {(height, width)}"
            )
        if isinstance(segmentation["counts"], list):
            return mask_utils.frPyObjects(segmentation, height, width)
        counts = segmentation["counts"]
        return {
            "size": [height, width],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
    raise TypeError(f"unknown segmentation type {type(segmentation).__name__}")


def rle_iou(a: dict[str, Any], b: dict[str, Any]) -> float:
    """IoU of two pycocotools RLEs of the same image; 1.0 when both are empty (as
    :func:`mask_iou`), exactly intersection / union of the pixel counts."""
    if mask_utils.area(a) == 0 and mask_utils.area(b) == 0:
        return 1.0
    return float(mask_utils.iou([a], [b], [0])[0, 0])
