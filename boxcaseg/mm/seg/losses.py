"""The Stage 2 losses as registered mmseg modules (thin wrappers of :mod:`boxcaseg.losses`).

Each exposes ``loss_name`` (``loss_*``), so mmengine logs every term on its own, and takes
``warmup_ratio``: the term's weight ramps linearly from 0 to ``loss_weight`` over that fraction
of the training iterations, as BoxInst ramps its pairwise term in over its first 10k of 90k (off
in every packaged config: docs/results.md, "Many classes", has what it did on coco128). The
iteration is read from mmengine's message hub (``iter`` and ``max_iters``, kept by the runner's
``RuntimeInfoHook``), so a resumed run ramps as the uninterrupted one did and a loss called
outside a runner has its full weight.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmseg.registry import MODELS
from torch import nn

from boxcaseg.losses import (
    colour_pairwise_loss,
    colour_similarity,
    mil_loss,
    pairwise_loss,
    rgb_to_lab,
    salient_loss,
)


class _WeightedLoss(nn.Module):
    default_name = "loss"

    def __init__(
        self, loss_weight: float = 1.0, loss_name: str | None = None, warmup_ratio: float = 0.0
    ) -> None:
        super().__init__()
        if not 0.0 <= warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        self.loss_weight = loss_weight
        self.warmup_ratio = warmup_ratio
        self._loss_name = loss_name or self.default_name

    @property
    def loss_name(self) -> str:
        return self._loss_name

    @property
    def weight(self) -> float:
        """``loss_weight``, times the warm-up factor at the runner's current iteration."""
        if self.warmup_ratio == 0.0 or not self.training:
            return self.loss_weight
        hub = MessageHub.get_current_instance()
        max_iters = hub.get_info("max_iters")
        if not max_iters:  # outside an iteration-based runner: no warm-up to follow
            return self.loss_weight
        warmup_iters = max(1.0, self.warmup_ratio * max_iters)
        return self.loss_weight * min(1.0, hub.get_info("iter", 0) / warmup_iters)


@MODELS.register_module()
class BoxMILLoss(_WeightedLoss):
    """Row/column MIL on box-head logits, every sample (target: box or salient mask)."""

    default_name = "loss_mil"

    def forward(self, box_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * mil_loss(box_logits, target)


@MODELS.register_module()
class PairwiseSmoothLoss(_WeightedLoss):
    """8-neighbour smoothness on sigmoid(box logits), every sample (weight 0.05 in the paper)."""

    default_name = "loss_pair"

    def forward(self, box_logits: torch.Tensor, **context: Any) -> torch.Tensor:
        return self.weight * pairwise_loss(box_logits.sigmoid())


@MODELS.register_module()
class SalientBCELoss(_WeightedLoss):
    """BCE of the fused salient logits vs the exact mask, salient samples only."""

    default_name = "loss_sal"

    def forward(self, salient_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weight * salient_loss(salient_logits, target)


@MODELS.register_module()
class ColourPairwiseLoss(_WeightedLoss):
    """The colour-affinity pairwise term of BoxInst, an option beside the paper's plain
    :class:`PairwiseSmoothLoss` (the paper configs keep the plain one).

    On box samples only, at the box head's native (1/4) resolution: neighbouring pixels
    (``dilation`` apart, 8 directions) whose Lab colours are similar (exp(-dist / theta) >=
    ``threshold``) are pushed to the same label, for pixels inside the box.
    """

    default_name = "loss_pair"

    def __init__(
        self,
        loss_weight: float = 1.0,
        dilation: int = 2,
        theta: float = 2.0,
        threshold: float = 0.3,
        loss_name: str | None = None,
        warmup_ratio: float = 0.0,
    ) -> None:
        super().__init__(loss_weight, loss_name, warmup_ratio)
        self.dilation = dilation
        self.theta = theta
        self.threshold = threshold

    def forward(
        self,
        box_logits: torch.Tensor,
        *,
        raw_logits: torch.Tensor,
        images: torch.Tensor,
        target: torch.Tensor,
        is_salient: torch.Tensor,
        **context: Any,
    ) -> torch.Tensor:
        is_box = ~is_salient
        logits = raw_logits[is_box]
        if logits.shape[0] == 0:
            return raw_logits.sum() * 0.0
        size = logits.shape[-2:]
        small = F.adaptive_avg_pool2d(images[is_box], size)  # BoxInst: the image at mask stride
        similarity = colour_similarity(rgb_to_lab(small), self.dilation, self.theta)
        region = F.adaptive_max_pool2d(target[is_box][:, None], size)[:, 0]
        return self.weight * colour_pairwise_loss(
            logits, similarity, region, self.threshold, self.dilation
        )
