"""Per-instance min-max normalisation of the salient head's probabilities, shared by Stage 2's
model (its ``predict``, :mod:`boxcaseg.mm.seg.model`) and Stage 3's inference
(:mod:`boxcaseg.proxy_inference`). It lives below both: Stage 3 loads the Stage 2 model
(:func:`boxcaseg.mm.seg.model.load_segmentor`) and the model's mIoU* hook runs Stage 3's
inference, so neither can import it from the other.
"""

from __future__ import annotations

import torch

EPS = 1e-6


def minmax_normalize(probs: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max normalisation of (N, H, W) maps to [0, 1]; a flat map becomes 0."""
    flat = probs.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    hi = flat.max(dim=1).values[:, None, None]
    span = hi - lo
    return torch.where(span > EPS, (probs - lo) / span.clamp(min=EPS), torch.zeros_like(probs))


NORMALIZATIONS = ("minmax", "none")


def normalize_probabilities(probs: torch.Tensor, how: str = "minmax") -> torch.Tensor:
    """The maps Stage 3 thresholds: ``minmax`` per sample (the paper), or ``none`` (the
    probabilities as they are: an object that fills its crop keeps its border pixels, which
    min-max stretching pushes towards 0)."""
    if how == "minmax":
        return minmax_normalize(probs)
    if how == "none":
        return probs
    raise ValueError(f"test_cfg.normalize {how!r}: one of {NORMALIZATIONS}")
