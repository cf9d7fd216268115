"""The three training losses of the class-agnostic segmentation model, as pure torch functions.

All take maps at crop resolution: logits ``(N, H, W)`` (a singleton channel dim is squeezed),
targets ``(N, H, W)`` in {0, 1}. See docs/method.md, Stage 2:

- :func:`mil_loss`: every row and every column of a crop is a bag; the bag's score is the max
  logit along it, its label is 1 when the row/column crosses the target (the box for box
  samples, the exact mask for salient ones). BCE-with-logits, mean over all bags.
- :func:`pairwise_loss`: mean squared difference between each pixel's probability and its 8
  neighbours' (every ordered neighbour pair inside the map counted once).
- :func:`salient_loss`: BCE-with-logits against the exact mask, of the salient samples.
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


def salient_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits of the fused salient output vs the exact mask. The caller passes the
    salient samples only (the salient head runs on nothing else).

    With no salient sample in the batch (empty tensors) the loss is an exact zero that still
    has a graph (so distributed training sees the same parameters used on every rank).
    """
    logits = _squeeze_channel(logits)
    target = _squeeze_channel(target)
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="mean")


# --- colour-affinity pairwise term (BoxInst style; an option beside the paper's plain term) ---


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 255] -> CIE Lab (D65), as skimage's ``rgb2lab``."""
    c = (rgb / 255.0).clamp(0.0, 1.0)
    linear = torch.where(c > 0.04045, ((c + 0.055) / 1.055).pow(2.4), c / 12.92)
    matrix = linear.new_tensor(
        [
            [0.412453, 0.357580, 0.180423],
            [0.212671, 0.715160, 0.072169],
            [0.019334, 0.119193, 0.950227],
        ]
    )
    xyz = torch.einsum("ij,njhw->nihw", matrix, linear)
    xyz = xyz / xyz.new_tensor([0.95047, 1.0, 1.08883])[None, :, None, None]
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-12).pow(1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    lightness = 116.0 * f[:, 1] - 16.0
    a = 500.0 * (f[:, 0] - f[:, 1])
    b = 200.0 * (f[:, 1] - f[:, 2])
    return torch.stack([lightness, a, b], dim=1)


def _neighbour_offsets(dilation: int) -> list[tuple[int, int]]:
    return [
        (dy * dilation, dx * dilation)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if (dy, dx) != (0, 0)
    ]


def _shifted(x: torch.Tensor, dy: int, dx: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` at (y + dy, x + dx) for every pixel, and where that neighbour lies inside the map."""
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    valid = torch.zeros(x.shape[-2:], dtype=torch.bool, device=x.device)
    ys, yd = slice(max(0, -dy), min(h, h - dy)), slice(max(0, dy), min(h, h + dy))
    xs, xd = slice(max(0, -dx), min(w, w - dx)), slice(max(0, dx), min(w, w + dx))
    out[..., ys, xs] = x[..., yd, xd]
    valid[ys, xs] = True
    return out, valid


def colour_similarity(lab: torch.Tensor, dilation: int = 2, theta: float = 2.0) -> torch.Tensor:
    """(N, 8, H, W): exp(-||Lab_i - Lab_j|| / theta) between every pixel i and its 8
    neighbours j at ``dilation`` pixels (0 where the neighbour is outside the map)."""
    sims = []
    for dy, dx in _neighbour_offsets(dilation):
        other, valid = _shifted(lab, dy, dx)
        sim = torch.exp(-(lab - other).norm(dim=1) / theta)
        sims.append(sim * valid)
    return torch.stack(sims, dim=1)


def colour_pairwise_loss(
    logits: torch.Tensor,
    similarity: torch.Tensor,
    region: torch.Tensor,
    threshold: float = 0.3,
    dilation: int = 2,
) -> torch.Tensor:
    """BoxInst's pairwise term: for every pixel i inside ``region`` (the box) and each of its
    8 neighbours j whose colour similarity is at least ``threshold``, the negative log
    probability that i and j take the same label, P = p_i p_j + (1 - p_i)(1 - p_j), averaged
    over those edges. ``logits`` (N, H, W) or (N, 1, H, W); ``similarity`` from
    :func:`colour_similarity` at the same size and dilation; ``region`` (N, H, W) in {0, 1}."""
    logits = _squeeze_channel(logits)
    region = _squeeze_channel(region).to(logits.dtype)
    log_fg, log_bg = F.logsigmoid(logits), F.logsigmoid(-logits)
    total = logits.new_zeros(())
    weight_sum = logits.new_zeros(())
    for k, (dy, dx) in enumerate(_neighbour_offsets(dilation)):
        nb_fg, _ = _shifted(log_fg, dy, dx)
        nb_bg, _ = _shifted(log_bg, dy, dx)
        log_same = torch.logaddexp(log_fg + nb_fg, log_bg + nb_bg)
        weight = (similarity[:, k] >= threshold).to(logits.dtype) * region
        total = total - (log_same * weight).sum()
        weight_sum = weight_sum + weight.sum()
    return total / weight_sum.clamp(min=1.0)
