"""The Stage 2 losses as registered mmseg modules (thin wrappers of :mod:`boxcaseg.losses`).

Each exposes ``loss_name`` (``loss_*``), so mmengine logs every term on its own.
"""

from __future__ import annotations

import torch
from torch import nn

from mmseg.registry import MODELS

from boxcaseg.losses import mil_loss, pairwise_loss, salient_loss


class _WeightedLoss(nn.Module):
    default_name = "loss"

    def __init__(self, loss_weight: float = 1.0, loss_name: str | None = None) -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self._loss_name = loss_name or self.default_name

    @property
    def loss_name(self) -> str:
        return self._loss_name


@MODELS.register_module()
class BoxMILLoss(_WeightedLoss):
    """Row/column MIL on box-head logits, every sample (target: box or salient mask)."""

    default_name = "loss_mil"

    def forward(self, box_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * mil_loss(box_logits, target)


@MODELS.register_module()
class PairwiseSmoothLoss(_WeightedLoss):
    """8-neighbour smoothness on sigmoid(box logits), every sample (weight 0.05 in the paper)."""

    default_name = "loss_pair"

    def forward(self, box_logits: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * pairwise_loss(box_logits.sigmoid())


@MODELS.register_module()
class SalientBCELoss(_WeightedLoss):
    """BCE of the fused salient logits vs the exact mask, salient samples only."""

    default_name = "loss_sal"

    def forward(self, salient_logits: torch.Tensor, target: torch.Tensor,
                is_salient: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * salient_loss(salient_logits, target, is_salient)
