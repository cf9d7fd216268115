"""block_nms (boxcaseg/mm/det/nms.py): mmcv's CPU NMS results, index for index, so a config
can switch to it without changing a figure; and its early stop at ``max_num``."""

from __future__ import annotations

import pytest
import torch
from mmcv.ops import batched_nms, nms

import boxcaseg.mm.det.nms as module
from boxcaseg.mm.det.nms import block_nms


def random_boxes(count: int, gen: torch.Generator, ties: bool = False):
    corner = torch.rand(count, 2, generator=gen) * 120
    size = torch.rand(count, 2, generator=gen) * 50 + 0.5
    scores = torch.rand(count, generator=gen)
    if ties:  # many equal scores (sigmoid saturation, repeated proposals) and equal boxes
        scores = (scores * 8).round() / 8
        corner[count // 2 :] = corner[: count - count // 2].clone()
        size[count // 2 :] = size[: count - count // 2].clone()
    return torch.cat([corner, corner + size], dim=1), scores


@pytest.mark.parametrize("block", [256, 7])
def test_kept_indices_and_dets_equal_mmcvs_over_random_sets(monkeypatch, block):
    monkeypatch.setattr(module, "BLOCK", block)  # 7: many blocks, chains across them
    gen = torch.Generator().manual_seed(block)
    for trial in range(120):
        count = int(torch.randint(0, 1500 if block == 256 else 300, (1,), generator=gen))
        boxes, scores = random_boxes(count, gen, ties=trial % 3 == 0)
        threshold = [0.3, 0.5, 0.7, 0.9][trial % 4]
        offset = trial % 2 if trial % 5 == 0 else 0
        kw = dict(offset=offset, score_threshold=0.2 if trial % 7 == 0 else 0)
        expected_dets, expected = nms(boxes, scores, threshold, **kw)
        dets, inds = block_nms(boxes, scores, threshold, **kw)
        assert torch.equal(inds, expected), (trial, count)
        assert torch.equal(dets, expected_dets)
        for max_num in (1, 50, 300):
            _, first = block_nms(boxes, scores, threshold, max_num=max_num, **kw)
            assert torch.equal(first, expected[:max_num]), (trial, max_num)


def test_a_chain_of_suppressions_keeps_every_other_box(monkeypatch):
    """Box k overlaps box k + 1 only: greedy keeps 0, 2, 4, ... (a suppressed box suppresses
    nothing), across block borders too."""
    monkeypatch.setattr(module, "BLOCK", 4)
    x = torch.arange(11, dtype=torch.float32) * 6
    boxes = torch.stack([x, torch.zeros(11), x + 10, torch.full((11,), 10.0)], dim=1)
    scores = torch.linspace(1.0, 0.5, 11)
    _, inds = block_nms(boxes, scores, 0.2)
    assert inds.tolist() == [0, 2, 4, 6, 8, 10]
    assert torch.equal(inds, nms(boxes, scores, 0.2)[1])


def test_batched_nms_takes_it_by_name_from_the_config():
    """mmcv's batched_nms (mmdet's RPN and RoI heads) with nms_cfg type 'block_nms' once
    boxcaseg.mm.det is imported: the same boxes, scores and indices as type 'nms'."""
    import boxcaseg.mm.det  # noqa: F401  (adds block_nms to mmcv.ops.nms)

    gen = torch.Generator().manual_seed(3)
    boxes, scores = random_boxes(2000, gen)
    levels = torch.randint(0, 5, (2000,), generator=gen)
    expected = batched_nms(boxes, scores, levels, dict(type="nms", iou_threshold=0.7))
    got = batched_nms(boxes, scores, levels, dict(type="block_nms", iou_threshold=0.7))
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    first = batched_nms(
        boxes, scores, levels, dict(type="block_nms", iou_threshold=0.7, max_num=300)
    )
    assert torch.equal(first[1], expected[1][:300])


def test_every_config_with_block_nms_stops_no_earlier_than_its_rpn_keeps():
    """max_num >= max_per_img wherever a packaged config states block_nms: the proposals are
    then the ones type='nms' gives. A run that raises max_per_img past it is refused."""
    from boxcaseg.configs import packaged_configs
    from boxcaseg.detection import load_detector_config
    from boxcaseg.engine import load_config
    from boxcaseg.mm.det.nms import check_early_stops

    checked = sum(
        check_early_stops(load_config(config).model, config)
        for config in packaged_configs()
        if config.startswith("det/")
    )
    assert checked == 4  # train and test RPN of the two Lite0 Mask R-CNNs
    with pytest.raises(ValueError, match="rpn_proposal.nms stops after max_num=300"):
        load_detector_config(
            "det/maskrcnn_lite0_fpn_demo.py",
            {"model.train_cfg.rpn_proposal.max_per_img": 500},
        )


def test_numpy_input_goes_to_mmcv():
    boxes, scores = random_boxes(50, torch.Generator().manual_seed(0))
    dets, inds = block_nms(boxes.numpy(), scores.numpy(), 0.5)
    expected_dets, expected = nms(boxes.numpy(), scores.numpy(), 0.5)
    assert (inds == expected).all() and (dets == expected_dets).all()
