"""The class-agnostic segmentation model of Stage 2: an mmseg backbone (HRNet) and two heads.

- box head: 1x1 conv + BN + ReLU + 1x1 conv -> one logit map, trained by MIL + pairwise on
  every sample;
- salient head: ``alpha * FCN head + (1 - alpha) * transfer head``, trained by pixel BCE on the
  SALIENT samples of the batch only (both run on those samples alone, so their BN statistics
  never see box crops). The FCN head has the box head's shape. The transfer head is the
  authors' design (docs/method.md, Stage 2): it regenerates BOTH box-head convs from their DETACHED
  weights, each with its own :class:`Transfer` module (an MLP over every output row of the
  weight matrix, bias ``k * b + b0``), and runs them on the backbone features with its own BN:
  features -> transfer1(hidden conv) -> BN -> ReLU -> transfer2(classifier). So the salient
  loss trains the FCN head, the two MLPs, the transfer BN and the backbone, and never any
  box-head parameter.

The HRNet branches are upsampled to the first branch's resolution (1/4) and concatenated
(270 channels for W18, 720 for W48), as in mmseg's ``resize_concat`` FCN heads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmengine.model import BaseModule
from mmengine.structures import PixelData
from mmseg.models.segmentors.base import BaseSegmentor
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import nn

from boxcaseg.configs import resolve_config
from boxcaseg.normalize import normalize_probabilities


class Transfer(nn.Module):
    """Regenerates a 1x1 conv from another one's DETACHED parameters (authors' ``Transfer``).

    Every output row of the source weight matrix (length ``in_channels``) goes through the same
    MLP ``in -> ratio * in -> in`` (LeakyReLU); the new bias is ``k * source_bias + b0`` with
    learned scalars ``k`` and ``b0`` (a source without bias counts as bias 0).
    """

    def __init__(
        self, in_channels: int, ratio: int = 4, leaky_slope: float = 0.1, init_std: float = 0.01
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, ratio * in_channels),
            nn.LeakyReLU(leaky_slope),
            nn.Linear(ratio * in_channels, in_channels),
        )
        self.k = nn.Parameter(torch.ones(()))
        self.b0 = nn.Parameter(torch.zeros(()))
        for layer in (self.mlp[0], self.mlp[2]):
            nn.init.normal_(layer.weight, 0.0, init_std)
            nn.init.zeros_(layer.bias)

    def forward(self, source: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
        """The regenerated (weight, bias) of ``source``'s shape; nothing flows back into it."""
        weight = source.weight.detach()
        new_weight = self.mlp(weight.flatten(1)).view_as(weight)
        bias = (
            source.bias.detach() if source.bias is not None else weight.new_zeros(weight.shape[0])
        )
        return new_weight, self.k * bias + self.b0


@MODELS.register_module()
class BoxCasegHead(BaseModule):
    """Box head + salient head (FCN + transfer) over concatenated multi-scale features."""

    def __init__(
        self,
        in_channels: list[int],
        channels: int | None = None,
        alpha: float = 0.7,
        mlp_ratio: int = 4,
        leaky_slope: float = 0.1,
        transfer_init_std: float = 0.01,
        norm_cfg: dict[str, Any] | None = None,
        align_corners: bool = False,
        init_cfg: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        self.in_channels = list(in_channels)
        total = sum(self.in_channels)
        channels = channels or total
        norm_cfg = norm_cfg or dict(type="BN", requires_grad=True)
        self.alpha = alpha
        self.align_corners = align_corners
        # the hidden conv has a bias, as in the authors' HRNet head: transfer1 regenerates it
        self.box_hidden = ConvModule(
            total, channels, 1, bias=True, norm_cfg=norm_cfg, act_cfg=dict(type="ReLU")
        )
        self.box_cls = nn.Conv2d(channels, 1, 1)
        self.fcn_hidden = ConvModule(
            total, channels, 1, norm_cfg=norm_cfg, act_cfg=dict(type="ReLU")
        )
        self.fcn_cls = nn.Conv2d(channels, 1, 1)
        self.transfer_hidden = Transfer(total, mlp_ratio, leaky_slope, transfer_init_std)
        self.transfer_norm = build_norm_layer(norm_cfg, channels)[1]
        self.transfer_cls = Transfer(channels, mlp_ratio, leaky_slope, transfer_init_std)

    def box_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.box_hidden.parameters()
        yield from self.box_cls.parameters()

    def salient_parameters(self) -> Iterator[nn.Parameter]:
        for module in (
            self.fcn_hidden,
            self.fcn_cls,
            self.transfer_hidden,
            self.transfer_norm,
            self.transfer_cls,
        ):
            yield from module.parameters()

    def fuse_inputs(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[2:]
        return torch.cat(
            [feats[0]]
            + [
                resize(f, size=size, mode="bilinear", align_corners=self.align_corners)
                for f in feats[1 : len(self.in_channels)]
            ],
            dim=1,
        )

    def box_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.box_cls(self.box_hidden(x))

    def transfer_logits(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.transfer_hidden(self.box_hidden.conv)
        hidden = F.relu(self.transfer_norm(F.conv2d(x, weight, bias)))
        weight, bias = self.transfer_cls(self.box_cls)
        return F.conv2d(hidden, weight, bias)

    def salient_logits(self, x: torch.Tensor) -> torch.Tensor:
        fcn = self.fcn_cls(self.fcn_hidden(x))
        return self.alpha * fcn + (1.0 - self.alpha) * self.transfer_logits(x)

    def forward(
        self, feats: list[torch.Tensor], salient: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Box logits of every sample and salient logits of the samples selected by the bool
        mask ``salient`` (all samples when None), at feature resolution.

        An empty selection still runs the salient path (on zero samples), so every parameter
        stays in the graph (DDP) and SyncBN still joins its collective on this rank.
        """
        x = self.fuse_inputs(list(feats))
        x_salient = x if salient is None else x[salient]
        return self.box_logits(x), self.salient_logits(x_salient)


@MODELS.register_module()
class BoxCasegSegmentor(BaseSegmentor):
    """Backbone + :class:`BoxCasegHead`, trained jointly on box crops and salient images.

    Data samples carry ``gt_sem_seg`` (box rectangle or exact mask, in {0, 1}) and the
    ``sample_kind`` metainfo ('box' / 'salient'). ``predict`` returns the salient head's
    logits (``seg_logits``) and its per-sample min-max normalised, thresholded mask.

    ``test_cfg``: the inference settings Stage 3 and the mIoU* hook share: ``threshold`` on
    the probabilities, min-max normalised per sample (``normalize='minmax'``, the paper: 0.5)
    or as they are (``'none'``), ``flip`` (average the logits of the
    crop and of its mirror image; off in the paper), ``scales`` (average the logits of the
    crop resized by these factors; None: the crop as it is, as in the paper), ``size_divisor``
    (each resized view's sides rounded to a multiple of it; None: not rounded), ``context``
    (Stage 3 crops each box grown by this fraction of its size per side and keeps the mask's
    part inside the box; 0 / None: the exact box, as in the paper).
    """

    def __init__(
        self,
        backbone: dict[str, Any],
        decode_head: dict[str, Any],
        loss_mil: dict[str, Any] | None = None,
        loss_pair: dict[str, Any] | None = None,
        loss_sal: dict[str, Any] | None = None,
        data_preprocessor: dict[str, Any] | None = None,
        pretrained: str | None = None,
        train_cfg: dict[str, Any] | None = None,
        test_cfg: dict[str, Any] | None = None,
        init_cfg: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if pretrained:  # a local file only: nothing is downloaded at run time
            backbone = {
                **backbone,
                "init_cfg": dict(type="CheckedPretrained", checkpoint=pretrained),
            }
        self.backbone = MODELS.build(backbone)
        self.decode_head = MODELS.build(decode_head)
        self.loss_mil = MODELS.build(loss_mil or dict(type="BoxMILLoss"))
        self.loss_pair = MODELS.build(
            loss_pair or dict(type="PairwiseSmoothLoss", loss_weight=0.05)
        )
        self.loss_sal = MODELS.build(loss_sal or dict(type="SalientBCELoss"))
        self.train_cfg = train_cfg or {}
        self.test_cfg = {
            "threshold": 0.5,
            "normalize": "minmax",
            "flip": False,
            "scales": None,
            **(test_cfg or {}),
        }

    def extract_feat(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone(inputs)

    def _upsample(self, logits: torch.Tensor, size: Any) -> torch.Tensor:
        return resize(
            logits, size=size, mode="bilinear", align_corners=self.decode_head.align_corners
        )

    def head_logits(
        self, inputs: torch.Tensor, salient: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(box logits of every sample, salient logits of the ``salient`` samples (all when
        None)), each (N, 1, H, W) at the input size."""
        box, sal = self.decode_head(self.extract_feat(inputs), salient)
        size = inputs.shape[2:]
        return self._upsample(box, size), self._upsample(sal, size)

    def salient_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """The salient head's logits at the input size. At inference, ``test_cfg.flip``
        averages in the mirror image's logits (mirrored back), and ``test_cfg.scales`` (input
        size factors, e.g. (0.75, 1.0, 1.25)) the logits of the crop resized by each factor,
        resized back: mmseg's multi-scale aug-test for one crop; ``test_cfg.size_divisor`` rounds
        each view's size to a multiple of it (the backbone's output stride)."""
        if self.training:
            return self.head_logits(inputs)[1]
        size = inputs.shape[2:]

        def at_input_size(logits: torch.Tensor) -> torch.Tensor:
            return logits if logits.shape[2:] == size else self._upsample(logits, size)

        total, views = 0, 0
        # size_divisor: each resized view's size rounded to a multiple of the network's output
        # stride, so the view's features align with its pixels (the crop itself stays as it is)
        divisor = self.test_cfg.get("size_divisor") or 1
        for scale in self.test_cfg.get("scales") or (1.0,):
            scaled_size = [
                s if scale == 1.0 else max(divisor, round(scale * s / divisor) * divisor)
                for s in size
            ]
            scaled = inputs if list(size) == scaled_size else self._upsample(inputs, scaled_size)
            total, views = total + at_input_size(self.head_logits(scaled)[1]), views + 1
            if self.test_cfg.get("flip"):
                mirrored = self.head_logits(scaled.flip(-1))[1].flip(-1)
                total, views = total + at_input_size(mirrored), views + 1
        return total / views

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: list[dict]) -> torch.Tensor:
        return self.salient_logits(inputs)

    def _forward(
        self, inputs: torch.Tensor, data_samples: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head_logits(inputs)

    def rgb_images(self, inputs: torch.Tensor) -> torch.Tensor:
        """The batch as RGB in [0, 255]: the data preprocessor's normalisation undone (for
        losses that look at colour)."""
        pre = self.data_preprocessor
        images = inputs
        if getattr(pre, "_enable_normalize", False):
            images = images * pre.std + pre.mean
        if not getattr(pre, "channel_conversion", False):  # still BGR, as mmcv loads
            images = images.flip(1)
        return images

    def loss(
        self, inputs: torch.Tensor, data_samples: list[SegDataSample]
    ) -> dict[str, torch.Tensor]:
        is_salient = torch.tensor(
            [ds.metainfo.get("sample_kind") == "salient" for ds in data_samples],
            dtype=torch.bool,
            device=inputs.device,
        )
        box_raw, sal_raw = self.decode_head(self.extract_feat(inputs), is_salient)
        size = inputs.shape[2:]
        box_logits, sal_logits = self._upsample(box_raw, size), self._upsample(sal_raw, size)
        target = torch.stack([ds.gt_sem_seg.data[0] for ds in data_samples]).float()
        target = target.clamp(max=1.0) * (target != 255)  # padding (255), if any, counts as 0
        return {
            self.loss_mil.loss_name: self.loss_mil(box_logits, target),
            self.loss_pair.loss_name: self.loss_pair(
                box_logits,
                raw_logits=box_raw,
                images=self.rgb_images(inputs),
                target=target,
                is_salient=is_salient,
            ),
            self.loss_sal.loss_name: self.loss_sal(sal_logits, target[is_salient]),
        }

    def predict(
        self, inputs: torch.Tensor, data_samples: list[SegDataSample] | None = None
    ) -> list[SegDataSample]:
        logits = self.salient_logits(inputs)
        probs = normalize_probabilities(logits.sigmoid()[:, 0], self.test_cfg["normalize"])
        masks = probs > self.test_cfg["threshold"]
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(len(inputs))]
        for ds, logit, mask in zip(data_samples, logits, masks):
            ds.set_data(
                {
                    "seg_logits": PixelData(data=logit),
                    "pred_sem_seg": PixelData(data=mask[None].long()),
                }
            )
        return data_samples


def load_segmentor(
    checkpoint: str, device: str | None = None, config: str | None = None
) -> BoxCasegSegmentor:
    """A trained Stage 2 model in eval mode on ``device`` (default: the GPU when there is one).

    It is built from the config stored IN the checkpoint (mmengine writes it as ``meta.cfg``),
    so every override it was trained with (``segmentation.alpha``, ``cfg_options``, ...) holds
    at inference too; ``config`` is only a fallback for checkpoints that carry none. The
    config is kept as ``model.cfg`` (Stage 3 reads its ``infer_size``)."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict

    from boxcaseg.mm.memory_format import apply_memory_format

    state = _load_checkpoint(checkpoint, map_location="cpu")
    text = (state.get("meta") or {}).get("cfg")
    if text:
        cfg = Config.fromstring(text, file_format=".py")
    elif config:
        cfg = Config.fromfile(resolve_config(config))
    else:
        raise ValueError(f"{checkpoint}: no config stored in the checkpoint; pass the model config")
    init_default_scope("mmseg")
    model_cfg = cfg.model.copy()
    model_cfg.pretrained = None  # the trained weights follow: no pretrained init at build time
    model = MODELS.build(model_cfg)
    load_state_dict(model, state.get("state_dict", state), strict=True)
    model.cfg = cfg
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = revert_sync_batchnorm(model).to(device).eval()
    apply_memory_format(model, cfg)  # as it trained
    return model
