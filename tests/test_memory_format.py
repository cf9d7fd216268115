"""The channels-last memory layout (boxcaseg/mm/memory_format.py): the ops the detectors run
must give the same results in it, and the layout must reach every place a model is built."""

from __future__ import annotations

import pytest
import torch
from mmcv.ops import RoIAlign

from boxcaseg.mm.det.roi_align import as_mmcv_roi_align
from boxcaseg.mm.memory_format import apply_memory_format


def roi_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 16, 24, 24, generator=gen)
    corners = torch.rand(40, 2, generator=gen) * 70
    sizes = torch.rand(40, 2, generator=gen) * 30 + 2
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=gen).float(), corners,
                      corners + sizes], 1)  # fmt: skip
    return features, rois


def roi_align(features: torch.Tensor, rois: torch.Tensor, use_torchvision: bool):
    features = features.detach().clone().requires_grad_()
    out = RoIAlign(7, 0.25, 1, aligned=True, use_torchvision=use_torchvision)(features, rois)
    out.backward(torch.ones_like(out))
    return out.detach(), features.grad


def test_mmcv_roi_align_misreads_channels_last_features_torchvisions_does_not():
    """Why a channels-last Mask R-CNN must use torchvision's RoIAlign: mmcv's CPU kernel reads
    its input as contiguous NCHW whatever its strides; torchvision's gives mmcv's NCHW values,
    forward and backward, in both layouts."""
    features, rois = roi_inputs()
    nhwc = features.contiguous(memory_format=torch.channels_last)
    reference, reference_grad = roi_align(features, rois, use_torchvision=False)
    wrong, _ = roi_align(nhwc, rois, use_torchvision=False)
    assert not torch.allclose(wrong, reference, atol=1e-3)
    for layout in (features, nhwc):
        out, grad = roi_align(layout, rois, use_torchvision=True)
        assert torch.equal(out, reference) and torch.equal(grad, reference_grad)


def build_detector(config: str, num_classes: int = 3):
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import boxcaseg.mm.det  # noqa: F401
    from boxcaseg.detection import _set_num_classes
    from boxcaseg.engine import load_config

    cfg = load_config(config)
    _set_num_classes(cfg.model, num_classes)
    init_default_scope("mmdet")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()  # the packaged ImageNet Lite0, random heads
    return cfg, model.eval()


def test_a_channels_last_model_with_mmcvs_roi_align_is_refused():
    cfg, model = build_detector("det/maskrcnn_lite0_fpn_demo.py")
    for name in ("bbox_roi_extractor", "mask_roi_extractor"):
        extractor = getattr(model.roi_head, name)
        extractor.roi_layers = as_mmcv_roi_align(extractor.roi_layers, use_torchvision=False)
    with pytest.raises(ValueError, match="GatherRoIAlign"):
        apply_memory_format(model, cfg)


@pytest.mark.slow
@pytest.mark.parametrize(
    "config", ["det/maskrcnn_lite0_fpn_demo.py", "det/boxinst_lite0_fpn_demo.py"]
)
def test_detections_are_the_same_in_either_layout(config):
    """The Lite0 detectors (the configs state channels_last) predict the same boxes, scores,
    labels and masks as the same weights in NCHW: RoIAlign, NMS, the BoxInst heads and the mask
    paste agree up to the float sums' order."""
    from mmdet.structures import DetDataSample

    cfg, model = build_detector(config)
    if "boxinst" in config:  # untrained heads score 0.01 (focal-loss prior): keep them
        model.bbox_head.test_cfg.score_thr = 0.0
    gen = torch.Generator().manual_seed(1)
    image = (torch.rand(3, 128, 128, generator=gen) * 255).to(torch.uint8)
    image[:, 30:70, 40:90] = torch.tensor([200, 40, 40], dtype=torch.uint8)[:, None, None]
    meta = dict(img_shape=(128, 128), ori_shape=(128, 128), scale_factor=(1.0, 1.0),
                batch_input_shape=(128, 128), pad_shape=(128, 128))  # fmt: skip

    def predict():
        data = model.data_preprocessor(
            {"inputs": [image], "data_samples": [DetDataSample(metainfo=meta)]}, False
        )
        with torch.no_grad():
            return model.predict(data["inputs"], data["data_samples"])[0].pred_instances

    nchw = predict()
    assert (
        apply_memory_format(model, cfg)
        == "[boxcaseg] memory layout channels_last (the config's memory_format)"
    )
    weights = [p for p in model.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    nhwc = predict()
    assert len(nchw) > 0 and len(nhwc) == len(nchw)
    assert torch.equal(nhwc.labels, nchw.labels)
    torch.testing.assert_close(nhwc.scores, nchw.scores, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(nhwc.bboxes, nchw.bboxes, atol=1e-2, rtol=1e-4)
    same = (nhwc.masks == nchw.masks).float().mean().item()
    assert same > 0.999, same


def test_the_cpu_recipes_state_channels_last_and_the_paper_configs_do_not():
    from boxcaseg.engine import load_config
    from boxcaseg.mm.memory_format import configured_memory_format

    for config in ("seg/boxcaseg_lite0_demo.py", "seg/boxcaseg_lite0_real_cpu.py",
                   "seg/boxcaseg_lite2_real_cpu.py", "det/maskrcnn_lite0_fpn_real_cpu.py",
                   "det/boxinst_lite0_fpn_real_cpu.py"):  # fmt: skip
        assert configured_memory_format(load_config(config)) == "channels_last", config
    for config in ("seg/boxcaseg_hr48_coco.py", "det/maskrcnn_r50_fpn_1x_coco.py"):
        assert configured_memory_format(load_config(config)) == "contiguous", config


def test_the_stage_2_model_gives_the_same_salient_maps_in_either_layout():
    """Stage 3's forward (load_segmentor applies the checkpoint config's layout) on the Lite0
    segmentation model: NHWC and NCHW logits agree up to the float sums' order."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import boxcaseg.mm.seg  # noqa: F401
    from boxcaseg.engine import load_config

    cfg = load_config("seg/boxcaseg_lite0_real_cpu.py")
    init_default_scope("mmseg")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    crops = torch.rand(4, 3, 160, 160, generator=torch.Generator().manual_seed(2)) * 255
    inputs = model.data_preprocessor({"inputs": list(crops)}, False)["inputs"]
    with torch.no_grad():
        nchw = model.salient_logits(inputs)
        apply_memory_format(model, cfg)
        nhwc = model.salient_logits(inputs)
    torch.testing.assert_close(nhwc, nchw, atol=1e-4, rtol=1e-4)


def test_stage_3_loads_a_lite0_checkpoint_in_the_layout_its_config_states(tmp_path):
    """load_segmentor (Stage 3, regrade, masks-from-boxes) builds the model from the config
    stored in the checkpoint and applies its memory_format: NHWC weights for the Lite0 recipe."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import boxcaseg.mm.seg  # noqa: F401
    from boxcaseg.engine import load_config
    from boxcaseg.mm.seg.model import load_segmentor

    cfg = load_config("seg/boxcaseg_lite0_demo.py")
    init_default_scope("mmseg")
    model = MODELS.build({**cfg.model, "pretrained": None})
    path = tmp_path / "final.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"cfg": cfg.pretty_text}}, path)
    loaded = load_segmentor(str(path), "cpu")
    weights = [p for p in loaded.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
