"""The training-free box-to-mask baseline: GrabCut initialised from each box (OpenCV's
``grabCut`` with ``GC_INIT_WITH_RECT``; the classical baseline of Khoreva et al., "Simple Does
It", CVPR 2017). Everything outside the box is background, the box interior is "probably
foreground", and a few rounds of colour-GMM graph cuts decide.

It tells a user what the learned proxy masks add over a colour model fitted per box. The masks
then go through the same Stage 4 merge as the learned ones (:mod:`boxcaseg.merge`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from boxcaseg.crops import box_window, clip_window
from boxcaseg.masks import Box


@dataclass(frozen=True)
class GrabCutSpec:
    iterations: int = 5  # graph-cut / GMM re-estimation rounds
    margin: float = (
        0.5  # context around the box (fraction of its size per side) for the background model
    )
    max_side: int = 320  # the context window is downscaled to at most this (cost is per pixel)
    seed: int = 0  # OpenCV's RNG (GMM initialisation by k-means)


def grabcut_mask(image: np.ndarray, box: Box, spec: GrabCutSpec = GrabCutSpec()) -> np.ndarray:
    """(H, W) bool mask of the object in ``box`` (``[x, y, w, h]``) of a BGR or RGB ``image``.

    Falls back to the filled box where GrabCut cannot run (a box of under 4 px a side, or no
    background pixel around it) or finds nothing."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box_window(box, width, height)
    out = np.zeros((height, width), bool)
    if x1 - x0 < 4 or y1 - y0 < 4:
        out[y0:y1, x0:x1] = True
        return out
    mx, my = spec.margin * (x1 - x0), spec.margin * (y1 - y0)
    cx0, cy0, cx1, cy1 = clip_window(x0 - mx, y0 - my, x1 + mx, y1 + my, width, height)
    context = np.ascontiguousarray(image[cy0:cy1, cx0:cx1, :3])
    scale = min(1.0, spec.max_side / max(context.shape[:2]))
    if scale < 1.0:
        context = cv2.resize(
            context,
            (max(1, round(context.shape[1] * scale)), max(1, round(context.shape[0] * scale))),
            interpolation=cv2.INTER_AREA,
        )
    ch, cw = context.shape[:2]
    rx0, ry0 = int((x0 - cx0) * scale), int((y0 - cy0) * scale)
    rx1 = min(cw, max(rx0 + 2, int(round((x1 - cx0) * scale))))
    ry1 = min(ch, max(ry0 + 2, int(round((y1 - cy0) * scale))))
    if rx0 == 0 and ry0 == 0 and rx1 == cw and ry1 == ch:  # nothing outside: no background model
        out[y0:y1, x0:x1] = True
        return out
    labels = np.zeros((ch, cw), np.uint8)
    cv2.setRNGSeed(spec.seed)
    try:
        cv2.grabCut(
            context,
            labels,
            (rx0, ry0, rx1 - rx0, ry1 - ry0),
            np.zeros((1, 65)),
            np.zeros((1, 65)),
            spec.iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:
        out[y0:y1, x0:x1] = True
        return out
    fg = (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)
    if scale < 1.0:
        fg = cv2.resize(
            fg.astype(np.uint8), (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_NEAREST
        ).astype(bool)
    out[cy0:cy1, cx0:cx1] = fg
    out[:, :x0] = out[:, x1:] = False  # nothing outside the box
    out[:y0] = out[y1:] = False
    if not out.any():
        out[y0:y1, x0:x1] = True
    return out
