"""Instance crops: the training window sampler, the inference crop, and their inverse (paste).

A *window* is an integer pixel rectangle ``(x0, y0, x1, y1)`` in the image frame, right and
bottom exclusive, always inside the image and at least one pixel wide and high. Crops are the
window's pixels resized to a fixed square size; :func:`paste_into_image` undoes that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from boxcaseg.masks import Box

Window = tuple[int, int, int, int]


@dataclass(frozen=True)
class CropJitter:
    """Training-crop randomness (docs/method.md, Stage 1): centre shift and half-size scale."""

    center_shift: float = 0.25  # centre moves by U(-s, s) x half-size, per axis
    scale_min: float = 0.5  # each half-size is scaled by U(scale_min, scale_max)
    scale_max: float = 1.5


def clip_window(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Window:
    """Round a float rectangle outwards to pixels and clip it to the image (>= 1 px each way)."""
    ix0 = min(max(int(math.floor(x0)), 0), width - 1)
    iy0 = min(max(int(math.floor(y0)), 0), height - 1)
    ix1 = max(min(int(math.ceil(x1)), width), ix0 + 1)
    iy1 = max(min(int(math.ceil(y1)), height), iy0 + 1)
    return ix0, iy0, ix1, iy1


def box_window(box: Box, width: int, height: int) -> Window:
    """The exact-box window used at inference: the box rounded outwards, clipped."""
    x, y, w, h = box
    return clip_window(x, y, x + w, y + h, width, height)


def context_window(box: Box, width: int, height: int, context: float) -> Window:
    """The box grown by ``context`` x its width (height) on each side, rounded outwards,
    clipped: the window Stage 3 crops when its model's ``test_cfg.context`` is set (0: the
    box itself, :func:`box_window`)."""
    x, y, w, h = box
    dx, dy = context * w, context * h
    return clip_window(x - dx, y - dy, x + w + dx, y + h + dy, width, height)


def sample_training_window(
    box: Box, width: int, height: int, rng: Any, jitter: CropJitter = CropJitter()
) -> Window:
    """Jitter the box centre and scale its half-sizes, then clip to the image.

    ``rng`` is anything with ``uniform(low, high)``: a ``np.random.Generator`` or the
    ``np.random`` module itself.
    """
    x, y, w, h = box
    half_w, half_h = w / 2.0, h / 2.0
    cx = x + half_w + rng.uniform(-jitter.center_shift, jitter.center_shift) * half_w
    cy = y + half_h + rng.uniform(-jitter.center_shift, jitter.center_shift) * half_h
    half_w *= rng.uniform(jitter.scale_min, jitter.scale_max)
    half_h *= rng.uniform(jitter.scale_min, jitter.scale_max)
    return clip_window(cx - half_w, cy - half_h, cx + half_w, cy + half_h, width, height)


def crop_resize(
    image: np.ndarray, window: Window, size: int, *, nearest: bool = False
) -> np.ndarray:
    """The window's pixels resized to ``size x size`` (bilinear, or nearest for labels)."""
    x0, y0, x1, y1 = window
    patch = image[y0:y1, x0:x1]
    if patch.shape[0] == size and patch.shape[1] == size:
        return patch.copy()
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.resize(
        patch.astype(np.uint8) if patch.dtype == bool else patch, (size, size), interpolation=interp
    )
    return out.astype(bool) if patch.dtype == bool else out


def box_label_in_window(box: Box, window: Window, size: int) -> np.ndarray:
    """The weak label of a training crop: 1 where the crop pixel's centre lies in the box.

    Computed at crop resolution from geometry (not by resizing a raster), so the MIL bags
    (rows / columns crossing the box) are exact.
    """
    x0, y0, x1, y1 = window
    x, y, w, h = box
    # centres of the crop's pixels, in image coordinates
    cx = x0 + (np.arange(size) + 0.5) * (x1 - x0) / size
    cy = y0 + (np.arange(size) + 0.5) * (y1 - y0) / size
    inside_x = (cx >= x) & (cx < x + w)
    inside_y = (cy >= y) & (cy < y + h)
    return (inside_y[:, None] & inside_x[None, :]).astype(np.uint8)


def resize_to_window(crop_map: np.ndarray, window: Window, *, nearest: bool = False) -> np.ndarray:
    """A crop-sized map resized back to its window's size (the window's part of
    :func:`paste_into_image`). Float maps are resized bilinearly by default."""
    x0, y0, x1, y1 = window
    win_w, win_h = x1 - x0, y1 - y0
    src = crop_map.astype(np.uint8) if crop_map.dtype == bool else crop_map
    if src.shape[:2] != (win_h, win_w):
        interp = cv2.INTER_NEAREST if nearest or crop_map.dtype == bool else cv2.INTER_LINEAR
        src = cv2.resize(src, (win_w, win_h), interpolation=interp)
    return src.astype(bool) if crop_map.dtype == bool else src


def paste_into_image(
    crop_map: np.ndarray, window: Window, height: int, width: int, *, nearest: bool = False
) -> np.ndarray:
    """Inverse of :func:`crop_resize`: resize a crop-sized map back to its window and place it
    into a zero image of ``(height, width)``. Float maps are resized bilinearly by default."""
    x0, y0, x1, y1 = window
    src = resize_to_window(crop_map, window, nearest=nearest)
    src = src.astype(np.uint8) if src.dtype == bool else src
    out = np.zeros((height, width) + crop_map.shape[2:], dtype=src.dtype)
    out[y0:y1, x0:x1] = src
    return out.astype(bool) if crop_map.dtype == bool else out
