"""The drop-aware mask head of Stage 5 (docs/method.md, Stage 5).

A positive RoI contributes to the mask loss only if the ground-truth instance it is matched
to has confidence above ``drop_threshold``. Dropped instances still train the RPN and the box
and class heads (nothing else changes). With no kept RoI in the batch the mask loss is an
exact zero that still backpropagates (every parameter gets a zero gradient).
"""

from __future__ import annotations

from typing import Any

import torch
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.registry import MODELS


def kept_roi_flags(
    sampling_results: list[Any],
    batch_gt_instances: list[Any],
    drop_threshold: float,
    device: torch.device,
) -> torch.Tensor:
    """(num_pos,) bool: the matched instance of each positive RoI is confident enough.
    Instances without confidences (ordinary datasets) are all kept."""
    flags = []
    for res, gt in zip(sampling_results, batch_gt_instances):
        if "confidences" in gt:
            conf = gt.confidences.to(device)[res.pos_assigned_gt_inds]
            flags.append(conf > drop_threshold)
        else:
            flags.append(torch.ones(len(res.pos_assigned_gt_inds), dtype=torch.bool, device=device))
    if not flags:
        return torch.zeros(0, dtype=torch.bool, device=device)
    return torch.cat(flags)


@MODELS.register_module()
class DropAwareFCNMaskHead(FCNMaskHead):
    """FCNMaskHead whose loss skips RoIs of low-confidence (dropped) instances."""

    def __init__(self, *args: Any, drop_threshold: float = 0.95, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drop_threshold = drop_threshold

    def loss_and_target(
        self,
        mask_preds: torch.Tensor,
        sampling_results: list[Any],
        batch_gt_instances: list[Any],
        rcnn_train_cfg: Any,
    ) -> dict[str, Any]:
        mask_targets = self.get_targets(
            sampling_results=sampling_results,
            batch_gt_instances=batch_gt_instances,
            rcnn_train_cfg=rcnn_train_cfg,
        )
        pos_labels = torch.cat([res.pos_gt_labels for res in sampling_results])
        kept = kept_roi_flags(
            sampling_results, batch_gt_instances, self.drop_threshold, mask_preds.device
        )
        if not bool(kept.any()):
            loss_mask = mask_preds.sum() * 0.0
        else:
            labels = torch.zeros_like(pos_labels) if self.class_agnostic else pos_labels
            loss_mask = self.loss_mask(mask_preds[kept], mask_targets[kept], labels[kept])
        kept_fraction = kept.float().mean() if len(kept) else mask_preds.new_zeros(())
        return dict(
            loss_mask={"loss_mask": loss_mask, "mask_kept_frac": kept_fraction.detach()},
            mask_targets=mask_targets,
        )
