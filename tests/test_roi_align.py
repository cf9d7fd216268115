"""GatherRoIAlign (boxcaseg/mm/det/roi_align.py): torchvision's roi_align values and feature
gradients bit for bit, so the Lite0 configs that pool with it train exactly as they did with
torchvision's kernel; then, with block_nms (tests/test_nms.py), the same at the scale of a whole
Mask R-CNN training step."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import roi_align

from boxcaseg.mm.det.roi_align import GatherRoIAlign, as_mmcv_roi_align


def rois_on(features: torch.Tensor, count: int, scale: float, gen, outside: bool):
    """RoIs in image pixels over ``features`` (stride 1 / scale); ``outside``: some reach past
    the map on every side (torchvision's zero samples and border clamps)."""
    n, _, h, w = features.shape
    size = torch.tensor([w / scale, h / scale])
    corner = torch.rand(count, 2, generator=gen) * size * (1.3 if outside else 0.9)
    if outside:
        corner -= 0.15 * size
    extent = torch.rand(count, 2, generator=gen) * size * 0.4 + 0.5
    far = corner + extent if outside else torch.minimum(corner + extent, size - 0.01)
    image = torch.randint(0, n, (count, 1), generator=gen).float()
    return torch.cat([image, corner, far], dim=1)


def pooled_and_grad(op, features: torch.Tensor, rois: torch.Tensor, upstream: torch.Tensor):
    features = features.detach().clone().requires_grad_()
    out = op(features, rois)
    (grad,) = torch.autograd.grad(out, features, upstream)
    return out.detach(), grad


@pytest.mark.parametrize("sampling_ratio", [1, 2, 3])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("outside", [False, True])
def test_values_and_feature_gradients_equal_torchvisions_bit_for_bit(
    sampling_ratio, aligned, channels_last, outside
):
    gen = torch.Generator().manual_seed(
        sampling_ratio * 8 + aligned * 4 + channels_last * 2 + outside
    )
    features = torch.randn(3, 16, 20, 24, generator=gen)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    rois = rois_on(features, 60, 0.25, gen, outside)
    layer = GatherRoIAlign(7, 0.25, sampling_ratio, aligned=aligned)
    upstream = torch.randn(60, 16, 7, 7, generator=gen)

    def reference(f, r):
        return roi_align(f, r, (7, 7), 0.25, sampling_ratio, aligned)

    expected, expected_grad = pooled_and_grad(reference, features, rois, upstream)
    out, grad = pooled_and_grad(layer, features, rois, upstream)
    assert expected.abs().sum() > 0 and expected_grad.abs().sum() > 0
    assert torch.equal(out, expected)
    assert torch.equal(grad, expected_grad)


def test_equal_on_two_threads_and_when_many_rois_share_pixels(monkeypatch):
    """Many overlapping RoIs add into the same pixels (the order of float additions matters),
    split over several scatter passes, on two threads."""
    import boxcaseg.mm.det.roi_align as module

    monkeypatch.setattr(module, "SCATTER_ROWS", 64)
    gen = torch.Generator().manual_seed(5)
    features = torch.randn(1, 8, 6, 6, generator=gen).contiguous(memory_format=torch.channels_last)
    rois = torch.tensor([[0, 2.0, 2.0, 20.0, 20.0]]).repeat(40, 1)
    rois[:, 1:] += torch.rand(40, 4, generator=gen) * 2
    upstream = torch.randn(40, 8, 14, 14, generator=gen)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out, grad = pooled_and_grad(GatherRoIAlign(14, 0.25, 2), features, rois, upstream)
    finally:
        torch.set_num_threads(threads)
    expected, expected_grad = pooled_and_grad(
        lambda f, r: roi_align(f, r, (14, 14), 0.25, 2, True), features, rois, upstream
    )
    assert torch.equal(out, expected) and torch.equal(grad, expected_grad)


@pytest.mark.parametrize("dtype, scale", [(torch.float64, 1.0), (torch.float32, 1e-37)])
def test_equal_in_double_and_with_subnormal_gradients(dtype, scale):
    """Double, and float gradients so small that g * w / count is subnormal: the division
    comes after the product, as in torchvision (folded into w it would round differently)."""
    gen = torch.Generator().manual_seed(7)
    features = torch.randn(2, 8, 12, 12, generator=gen).to(dtype)
    rois = rois_on(features, 30, 0.5, gen, outside=True).to(dtype)
    upstream = (torch.randn(30, 8, 5, 5, generator=gen) * scale).to(dtype)
    out, grad = pooled_and_grad(GatherRoIAlign(5, 0.5, 2), features, rois, upstream)
    expected, expected_grad = pooled_and_grad(
        lambda f, r: roi_align(f, r, (5, 5), 0.5, 2, True), features, rois, upstream
    )
    assert expected_grad.abs().sum() > 0
    assert torch.equal(out, expected) and torch.equal(grad, expected_grad)


def test_a_non_finite_first_pixel_reaches_the_bins_that_sample_outside_the_map():
    """torchvision reads an image's first pixel with weight 0 for a sample outside the map:
    an inf there makes those bins NaN, and GatherRoIAlign's too."""
    features = torch.ones(1, 1, 6, 6)
    features[0, 0, 0, 0] = float("inf")
    rois = torch.tensor([[0.0, -30.0, -30.0, 8.0, 8.0]])
    expected = roi_align(features, rois, (2, 2), 0.5, 1, True)
    out = GatherRoIAlign(2, 0.5, 1)(features, rois)
    assert expected.isnan().any()
    assert torch.equal(out.isnan(), expected.isnan())
    assert torch.equal(out.nan_to_num(), expected.nan_to_num())


def test_an_adaptive_sample_count_and_max_pooling_are_refused_by_name():
    with pytest.raises(ValueError, match="sampling_ratio 0"):
        GatherRoIAlign(7, 0.25, 0)
    with pytest.raises(ValueError, match="pool_mode 'max'"):
        GatherRoIAlign(7, 0.25, 1, pool_mode="max")


def detector_and_batch(config: str):
    """A Lite0 Mask R-CNN as its config builds it (channels_last, ImageNet trunk, random heads)
    and a training batch of two 128 px images with boxes, labels and masks."""
    import numpy as np
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.registry import init_default_scope
    from mmengine.structures import InstanceData

    import boxcaseg.mm.det  # noqa: F401  (adds GatherRoIAlign to mmcv.ops)
    from boxcaseg.detection import _set_num_classes
    from boxcaseg.engine import load_config
    from boxcaseg.mm.memory_format import apply_memory_format

    cfg = load_config(config)
    _set_num_classes(cfg.model, 2)
    init_default_scope("mmdet")
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    apply_memory_format(model, cfg)
    gen = torch.Generator().manual_seed(3)
    images, samples = [], []
    for i in range(2):
        image = (torch.rand(3, 128, 128, generator=gen) * 255).to(torch.uint8)
        boxes = torch.tensor([[10.0, 12.0, 70.0, 60.0], [50.0 + i, 40.0, 120.0, 118.0]])
        masks = np.zeros((2, 128, 128), dtype=np.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[k, y1 + 4 : y2 - 4, x1 + 3 : x2 - 3] = 1
            image[:, y1:y2, x1:x2] = torch.tensor([200, 60 * k, 40], dtype=torch.uint8)[
                :, None, None
            ]
        gt = InstanceData(
            bboxes=boxes, labels=torch.tensor([0, 1]), masks=BitmapMasks(masks, 128, 128)
        )
        meta = dict(img_shape=(128, 128), ori_shape=(128, 128), scale_factor=(1.0, 1.0),
                    batch_input_shape=(128, 128), pad_shape=(128, 128))  # fmt: skip
        images.append(image)
        samples.append(DetDataSample(metainfo=meta, gt_instances=gt))
    return model, {"inputs": images, "data_samples": samples}


@pytest.mark.parametrize(
    "config", ["det/maskrcnn_lite0_fpn_demo.py", "det/maskrcnn_lite0_fpn_real_cpu.py"]
)
def test_a_mask_rcnn_training_step_is_the_same_as_with_torchvision_roi_align_and_mmcv_nms(
    config,
):
    """The Lite0 configs' switch from torchvision's RoIAlign and mmcv's NMS to GatherRoIAlign
    and block_nms (boxcaseg/mm/det/nms.py) changes no figure: one training step of each Lite0
    Mask R-CNN gives the same losses and the same gradient in every parameter."""
    model, batch = detector_and_batch(config)
    extractors = (model.roi_head.bbox_roi_extractor, model.roi_head.mask_roi_extractor)
    assert all(isinstance(layer, GatherRoIAlign) for e in extractors for layer in e.roi_layers)
    assert model.train_cfg.rpn_proposal.nms.type == "block_nms"

    def step():
        torch.manual_seed(1)  # the RPN / RoI samplers draw at random
        model.zero_grad()
        data = model.data_preprocessor(batch, True)
        total, losses = model.parse_losses(model.loss(data["inputs"], data["data_samples"]))
        total.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return losses, grads

    model.train()
    losses, grads = step()
    for e in extractors:
        e.roi_layers = as_mmcv_roi_align(e.roi_layers)
    model.train_cfg.rpn_proposal.nms = dict(type="nms", iou_threshold=0.7)
    reference_losses, reference_grads = step()
    assert losses["loss_mask"] > 0
    assert losses.keys() == reference_losses.keys()
    for key, value in reference_losses.items():
        assert losses[key] == value, key  # parse_losses' floats
    assert grads.keys() == reference_grads.keys() and len(grads) > 100
    for name, value in reference_grads.items():
        assert torch.equal(grads[name], value), name
