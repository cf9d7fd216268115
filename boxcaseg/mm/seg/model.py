"""The class-agnostic segmentation model of Stage 2: an mmseg backbone (HRNet) and two heads.

- box head: 1x1 conv + BN + ReLU + 1x1 conv -> one logit map, trained by MIL + pairwise;
- salient head: ``alpha * FCN head + (1 - alpha) * transfer head``, trained by pixel BCE on
  salient images. The FCN head has the box head's shape. The transfer head applies, to the box
  head's hidden features, a 1x1 conv whose weights are produced from the DETACHED box-head
  classifier weights by a small MLP (C -> 4C -> C, LeakyReLU 0.1), with bias ``k * b + b0``
  (``b`` the detached box-head bias, ``k``/``b0`` learned scalars). This is how the box
  knowledge is transferred to the salient output without the salient loss pulling on the box
  classifier.

The HRNet branches are upsampled to the first branch's resolution (1/4) and concatenated
(270 channels for W18, 720 for W48), as in mmseg's ``resize_concat`` FCN heads.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule
from mmengine.structures import PixelData
from torch import nn

from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from boxcaseg.proxy import minmax_normalize


@MODELS.register_module()
class BoxCasegHead(BaseModule):
    """Box head + salient head (FCN + transfer) over concatenated multi-scale features."""

    def __init__(self, in_channels: list[int], channels: int | None = None, alpha: float = 0.7,
                 mlp_ratio: int = 4, leaky_slope: float = 0.1,
                 norm_cfg: dict[str, Any] | None = None, align_corners: bool = False,
                 init_cfg: dict[str, Any] | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.in_channels = list(in_channels)
        total = sum(self.in_channels)
        channels = channels or total
        norm_cfg = norm_cfg or dict(type="BN", requires_grad=True)
        self.alpha = alpha
        self.align_corners = align_corners
        self.box_hidden = ConvModule(total, channels, 1, norm_cfg=norm_cfg, act_cfg=dict(type="ReLU"))
        self.box_cls = nn.Conv2d(channels, 1, 1)
        self.fcn_hidden = ConvModule(total, channels, 1, norm_cfg=norm_cfg, act_cfg=dict(type="ReLU"))
        self.fcn_cls = nn.Conv2d(channels, 1, 1)
        self.transfer_mlp = nn.Sequential(
            nn.Linear(channels, mlp_ratio * channels), nn.LeakyReLU(leaky_slope),
            nn.Linear(mlp_ratio * channels, channels))
        self.transfer_k = nn.Parameter(torch.ones(()))
        self.transfer_b0 = nn.Parameter(torch.zeros(()))

    def fuse_inputs(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        return torch.cat([feats[0]] + [resize(f, size=size, mode="bilinear",
                                              align_corners=self.align_corners)
                                       for f in feats[1:len(self.in_channels)]], dim=1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Box logits and fused salient logits, (N, 1, h, w) each, at feature resolution."""
        x = self.fuse_inputs(list(feats))
        box_hidden = self.box_hidden(x)
        box_logits = self.box_cls(box_hidden)
        fcn_logits = self.fcn_cls(self.fcn_hidden(x))
        weight = self.box_cls.weight.detach().flatten(1)  # (1, C)
        transfer_weight = self.transfer_mlp(weight).view_as(self.box_cls.weight)
        transfer_bias = self.transfer_k * self.box_cls.bias.detach() + self.transfer_b0
        transfer_logits = F.conv2d(box_hidden, transfer_weight, transfer_bias)
        salient_logits = self.alpha * fcn_logits + (1.0 - self.alpha) * transfer_logits
        return box_logits, salient_logits


@MODELS.register_module()
class BoxCasegSegmentor(BaseSegmentor):
    """Backbone + :class:`BoxCasegHead`, trained jointly on box crops and salient images.

    Data samples carry ``gt_sem_seg`` (box rectangle or exact mask, in {0, 1}) and the
    ``sample_kind`` metainfo ('box' / 'salient'). ``predict`` returns the salient head's
    logits (``seg_logits``) and its per-sample min-max normalised, thresholded mask.
    """

    def __init__(self, backbone: dict[str, Any], decode_head: dict[str, Any],
                 loss_mil: dict[str, Any] | None = None, loss_pair: dict[str, Any] | None = None,
                 loss_sal: dict[str, Any] | None = None,
                 data_preprocessor: dict[str, Any] | None = None, pretrained: str | None = None,
                 train_cfg: dict[str, Any] | None = None, test_cfg: dict[str, Any] | None = None,
                 init_cfg: dict[str, Any] | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if pretrained:  # a local file only: nothing is downloaded at run time
            backbone = {**backbone, "init_cfg": dict(type="Pretrained", checkpoint=pretrained)}
        self.backbone = MODELS.build(backbone)
        self.decode_head = MODELS.build(decode_head)
        self.loss_mil = MODELS.build(loss_mil or dict(type="BoxMILLoss"))
        self.loss_pair = MODELS.build(loss_pair or dict(type="PairwiseSmoothLoss", loss_weight=0.05))
        self.loss_sal = MODELS.build(loss_sal or dict(type="SalientBCELoss"))
        self.train_cfg = train_cfg or {}
        self.test_cfg = {"threshold": 0.5, **(test_cfg or {})}

    def extract_feat(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(inputs)

    def head_logits(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(box logits, salient logits), each (N, 1, H, W) at the input size."""
        box, sal = self.decode_head(self.extract_feat(inputs))
        size = inputs.shape[2:]
        align = self.decode_head.align_corners
        return (resize(box, size=size, mode="bilinear", align_corners=align),
                resize(sal, size=size, mode="bilinear", align_corners=align))

    def salient_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.head_logits(inputs)[1]

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        return self.salient_logits(inputs)

    def _forward(self, inputs: torch.Tensor, data_samples: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head_logits(inputs)

    def loss(self, inputs: torch.Tensor, data_samples: list[SegDataSample]) -> dict[str, torch.Tensor]:
        box_logits, sal_logits = self.head_logits(inputs)
        target = torch.stack([ds.gt_sem_seg.data[0] for ds in data_samples]).float()
        target = target.clamp(max=1.0) * (target != 255)  # padding (255), if any, counts as 0
        is_salient = torch.tensor([ds.metainfo.get("sample_kind") == "salient" for ds in data_samples],
                                  device=inputs.device)
        return {
            self.loss_mil.loss_name: self.loss_mil(box_logits, target),
            self.loss_pair.loss_name: self.loss_pair(box_logits),
            self.loss_sal.loss_name: self.loss_sal(sal_logits, target, is_salient),
        }

    def predict(self, inputs: torch.Tensor, data_samples: list[SegDataSample] | None = None
                ) -> list[SegDataSample]:
        logits = self.salient_logits(inputs)
        masks = minmax_normalize(logits.sigmoid()[:, 0]) > self.test_cfg["threshold"]
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(len(inputs))]
        for ds, logit, mask in zip(data_samples, logits, masks):
            ds.set_data({"seg_logits": PixelData(data=logit),
                         "pred_sem_seg": PixelData(data=mask[None].long())})
        return data_samples
