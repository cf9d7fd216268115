"""The three Stage 2 losses on hand-made tensors with hand-computed values."""

import math

import pytest
import torch

from boxcaseg.losses import mil_bag_labels, mil_loss, pairwise_loss, salient_loss


def bce(x: float, y: float) -> float:
    return math.log1p(math.exp(x)) - x * y


def test_mil_bag_labels_mark_rows_and_columns_crossing_the_box():
    target = torch.zeros(1, 5, 6)
    target[0, 1:3, 2:5] = 1  # box over rows 1-2, columns 2-4
    rows, cols = mil_bag_labels(target)
    assert rows.tolist() == [[0, 1, 1, 0, 0]]
    assert cols.tolist() == [[0, 0, 1, 1, 1, 0]]


def test_mil_loss_hand_computed():
    logits = torch.zeros(1, 1, 4, 4)
    logits[0, 0, 1, 2] = 2.0  # row maxes [0, 2, 0, 0], column maxes [0, 0, 2, 0]
    target = torch.zeros(1, 4, 4)
    target[0, 1:3, 1:3] = 1  # rows 1-2 and columns 1-2 cross the box
    # rows: (0,0) (2,1) (0,1) (0,0); columns: (0,0) (0,1) (2,1) (0,0)
    expected = (6 * bce(0, 0) + 2 * bce(2, 1)) / 8  # bce(0, y) = ln 2 for either label
    assert mil_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_mil_loss_is_low_when_bags_agree_and_high_when_they_do_not():
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    good = torch.where(target.bool(), 10.0, -10.0)[:, None]
    assert mil_loss(good, target).item() < 1e-3
    assert mil_loss(-good, target).item() > 5


def test_pairwise_loss_zero_on_a_constant_map():
    assert pairwise_loss(torch.full((2, 5, 7), 0.3)).item() == 0.0


def test_pairwise_loss_hand_computed_3x3_peak():
    probs = torch.zeros(1, 3, 3)
    probs[0, 1, 1] = 1.0
    # a 3x3 map has 6 horizontal + 6 vertical + 8 diagonal neighbour pairs = 20;
    # the 8 pairs touching the centre differ by 1, all others by 0
    assert pairwise_loss(probs).item() == pytest.approx(8 / 20)


def test_pairwise_loss_hand_computed_3x3_ramp():
    probs = torch.tensor([[0.0, 0.5, 1.0]] * 3)[None]
    # horizontal: 6 pairs x 0.25; vertical: 0; each diagonal direction: 4 pairs x 0.25
    assert pairwise_loss(probs).item() == pytest.approx((1.5 + 1.0 + 1.0) / 20)


def test_salient_loss_is_pixel_bce_of_the_salient_samples():
    logits = torch.randn(2, 1, 4, 4)
    target = (torch.rand(2, 4, 4) > 0.5).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target)
    assert salient_loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_salient_loss_without_salient_samples_is_zero_and_backpropagates():
    weight = torch.ones((), requires_grad=True)
    logits = torch.randn(0, 1, 4, 4) * weight  # the salient head run on zero samples
    loss = salient_loss(logits, torch.ones(0, 4, 4))
    assert loss.item() == 0.0
    loss.backward()
    assert weight.grad is not None and weight.grad.item() == 0.0


# --- the colour-affinity pairwise term (BoxInst style, an option beside the plain one) ---------


def test_rgb_to_lab_known_colours():
    from boxcaseg.losses import rgb_to_lab

    rgb = torch.tensor([[255.0, 255, 255], [0, 0, 0], [255, 0, 0]]).T[
        None, :, :, None
    ]  # (1, 3, 3, 1)
    lab = rgb_to_lab(rgb)[0, :, :, 0].T
    assert lab[0].tolist() == pytest.approx([100.0, 0.0, 0.0], abs=0.05)
    assert lab[1].tolist() == pytest.approx([0.0, 0.0, 0.0], abs=0.05)
    assert lab[2].tolist() == pytest.approx([53.24, 80.09, 67.20], abs=0.1)  # skimage's rgb2lab


def _two_colour_image(w=6):
    """(1, 3, 4, w) RGB: black left half, white right half."""
    rgb = torch.zeros(1, 3, 4, w)
    rgb[..., w // 2 :] = 255.0
    return rgb


def test_colour_similarity_is_one_within_a_colour_and_zero_across_an_edge_or_the_border():
    from boxcaseg.losses import colour_similarity, rgb_to_lab

    sim = colour_similarity(rgb_to_lab(_two_colour_image()), dilation=1)
    # offsets in order (-1,-1) (-1,0) (-1,1) (0,-1) (0,1) (1,-1) (1,0) (1,1); pixel (1, 1) is black
    assert sim[0, :, 1, 1].tolist() == pytest.approx([1.0] * 8)
    right = 4  # offset (0, +1) of pixel (1, 2): black -> white, 100 Lab units apart
    assert sim[0, right, 1, 2].item() < 1e-6
    assert sim[0, 0, 0, 0].item() == 0.0  # the neighbour up-left of a corner is outside


def test_colour_pairwise_loss_hand_computed():
    from boxcaseg.losses import colour_pairwise_loss, colour_similarity, rgb_to_lab

    sim = colour_similarity(rgb_to_lab(_two_colour_image()), dilation=1)
    region = torch.ones(1, 4, 6)
    # label the black half background and the white half foreground, confidently: every
    # similar-colour edge agrees, the cross-colour edges are not counted
    logits = torch.full((1, 4, 6), -20.0)
    logits[..., 3:] = 20.0
    assert colour_pairwise_loss(logits, sim, region, dilation=1).item() < 1e-6
    # uniform p = sigmoid(0) = 0.5: every counted edge has P(same) = 0.5
    flat = colour_pairwise_loss(torch.zeros(1, 4, 6), sim, region, dilation=1)
    assert flat.item() == pytest.approx(math.log(2), rel=1e-5)
    # outside the region nothing counts
    assert (
        colour_pairwise_loss(torch.randn(1, 4, 6), sim, torch.zeros(1, 4, 6), dilation=1).item()
        == 0.0
    )


def test_colour_pairwise_loss_ignores_label_changes_at_colour_edges_only():
    from boxcaseg.losses import colour_pairwise_loss, colour_similarity, rgb_to_lab

    sim = colour_similarity(rgb_to_lab(_two_colour_image()), dilation=1)
    region = torch.ones(1, 4, 6)
    split_at_colour_edge = torch.where(torch.arange(6) < 3, -20.0, 20.0).expand(1, 4, 6)
    split_inside_a_colour = torch.where(torch.arange(6) < 1, -20.0, 20.0).expand(1, 4, 6)
    assert colour_pairwise_loss(split_at_colour_edge, sim, region, dilation=1).item() < 1e-6
    assert colour_pairwise_loss(split_inside_a_colour, sim, region, dilation=1).item() > 1.0


def test_pairwise_weight_ramps_in_over_the_warmup_fraction_of_training():
    """warmup_ratio=0.1 of 1000 iterations: the term's weight is loss_weight * iter / 100 up to
    iteration 100, then loss_weight; in eval mode, or without a runner's iteration count, it is
    the full weight."""
    from mmengine.logging import MessageHub

    from boxcaseg.mm.seg.losses import ColourPairwiseLoss

    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    context = dict(
        raw_logits=logits,
        images=torch.rand(2, 3, 8, 8),
        target=torch.ones(2, 8, 8),
        is_salient=torch.tensor([False, False]),
    )
    full = ColourPairwiseLoss(loss_weight=0.5, dilation=1)(logits, **context).item()
    assert full > 0
    ramped = ColourPairwiseLoss(loss_weight=0.5, dilation=1, warmup_ratio=0.1)
    assert ramped(logits, **context).item() == pytest.approx(full)  # no runner: no ramp
    hub = MessageHub.get_instance("test_pairwise_warmup")  # becomes the current hub
    hub.update_info("max_iters", 1000)
    try:
        for iteration, factor in [(0, 0.0), (25, 0.25), (50, 0.5), (100, 1.0), (900, 1.0)]:
            hub.update_info("iter", iteration)
            assert ramped(logits, **context).item() == pytest.approx(full * factor)
        hub.update_info("iter", 10)
        assert ramped.eval()(logits, **context).item() == pytest.approx(full)
    finally:
        hub.update_info("max_iters", 0)  # later tests in this process see no runner's count
    with pytest.raises(ValueError, match="warmup_ratio"):
        ColourPairwiseLoss(warmup_ratio=1.0)


def test_pairwise_shortcuts_of_the_segmentation_section_reach_the_built_loss():
    """config.yaml's segmentation.pair_weight / pair_warmup set the real-photo config's colour
    pairwise loss; null keeps the config's values (weight 1.0, no warm-up)."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from boxcaseg.engine import load_config
    from boxcaseg.sections import segmentation_options

    init_default_scope("mmseg")
    kept = load_config("seg/boxcaseg_lite0_real_cpu.py", segmentation_options({}))
    loss = MODELS.build(kept.model.loss_pair)
    assert (loss.loss_weight, loss.warmup_ratio) == (1.0, 0.0)
    options = segmentation_options({"pair_weight": 0.5, "pair_warmup": 0.1})
    changed = load_config("seg/boxcaseg_lite0_real_cpu.py", options)
    loss = MODELS.build(changed.model.loss_pair)
    assert type(loss).__name__ == "ColourPairwiseLoss"
    assert (loss.loss_weight, loss.warmup_ratio) == (0.5, 0.1)
