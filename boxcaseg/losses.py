"""The three training losses of the class-agnostic segmentation model, as pure torch functions.

All take maps at crop resolution: logits ``(N, H, W)`` (a singleton channel dim is squeezed),
targets ``(N, H, W)`` in {0, 1}. See method.md, Stage 2:

- :func:`mil_loss`: every row and every column of a crop is a bag; the bag's score is the max
  logit along it, its label is 1 when the row/column crosses the target (the box for box
  samples, the exact mask for salient ones). BCE-with-logits, mean over all bags.
- :func:`pairwise_loss`: mean squared difference between each pixel's probability and its 8
  neighbours' (every ordered neighbour pair inside the map counted once).
- :func:`salient_loss`: BCE-with-logits against the exact mask, over salient samples only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _squeeze_channel(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"expected one channel, got shape {tuple(x.shape)}")
        return x[:, 0]
    if x.dim() != 3:
        raise ValueError(f"expected (N, H, W) or (N, 1, H, W), got shape {tuple(x.shape)}")
    return x


def mil_bag_labels(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column bag labels of binary targets: (N, H) and (N, W) floats in {0, 1}."""
    target = _squeeze_channel(target).float()
    return target.amax(dim=2), target.amax(dim=1)


def mil_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Row/column multiple-instance loss on box-head logits (mean over all bags)."""
    logits = _squeeze_channel(logits)
    row_labels, col_labels = mil_bag_labels(target)
    scores = torch.cat([logits.amax(dim=2), logits.amax(dim=1)], dim=1)  # (N, H + W)
    labels = torch.cat([row_labels, col_labels], dim=1).to(scores.dtype)
    return F.binary_cross_entropy_with_logits(scores, labels, reduction="mean")


# Four of the eight neighbour offsets; each unordered pair appears once here and twice among
# the eight ordered ones, so the mean over these equals the mean over all 8-neighbour pairs.
_HALF_NEIGHBOURHOOD = ((0, 1), (1, 0), (1, 1), (1, -1))


def pairwise_loss(probs: torch.Tensor) -> torch.Tensor:
    """8-neighbour smoothness: mean of (p_i - p_j)^2 over all neighbouring pixel pairs."""
    probs = _squeeze_channel(probs)
    _, h, w = probs.shape
    total = probs.new_zeros(())
    count = 0
    for dy, dx in _HALF_NEIGHBOURHOOD:
        if dy >= h or abs(dx) >= w:
            continue
        if dx >= 0:
            a = probs[:, : h - dy, : w - dx]
            b = probs[:, dy:, dx:]
        else:
            a = probs[:, : h - dy, -dx:]
            b = probs[:, dy:, : w + dx]
        total = total + (a - b).pow(2).sum()
        count += a.numel()
    if count == 0:
        return probs.sum() * 0.0
    return total / count


def salient_loss(logits: torch.Tensor, target: torch.Tensor, is_salient: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits of the fused salient output vs the exact mask, salient samples only.

    With no salient sample in the batch the loss is an exact zero that still has a graph
    (so distributed training sees the same parameters used on every rank).
    """
    logits = _squeeze_channel(logits)
    target = _squeeze_channel(target)
    is_salient = is_salient.to(torch.bool)
    if not bool(is_salient.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(
        logits[is_salient], target[is_salient].to(logits.dtype), reduction="mean")
