"""Stage 4 merge and drop, pixel by pixel on hand-made masks."""

import numpy as np

from boxcaseg.masks import box_to_mask, mask_to_box, masks_to_boxes, paired_box_iou, rle_decode, rle_encode
from boxcaseg.merge import merge_and_score, merge_instance_masks, paint_order


def test_paint_order_is_descending_area_and_stable():
    boxes = np.array([[0, 0, 2, 2], [0, 0, 5, 5], [0, 0, 2, 2], [0, 0, 3, 3]])
    assert paint_order(boxes).tolist() == [1, 3, 0, 2]


def test_smaller_box_wins_the_overlap_pixel_by_pixel():
    big = np.zeros((6, 8), bool)
    big[1:5, 1:6] = True
    small = np.zeros((6, 8), bool)
    small[2:4, 4:7] = True
    boxes = np.array([[1, 1, 5, 4], [4, 2, 3, 2]], float)
    # given in either order, the small box is painted last
    for order in ([0, 1], [1, 0]):
        merged = merge_instance_masks(np.stack([big, small])[order], boxes[order])
        out_big, out_small = merged[order.index(0)], merged[order.index(1)]
        expected_big = big & ~small
        assert np.array_equal(out_small, small)
        assert np.array_equal(out_big, expected_big)
        assert not (out_big & out_small).any()
    assert merged.dtype == bool


def test_fully_overwritten_instance_scores_zero_and_is_dropped():
    outer = np.zeros((10, 10), bool)
    outer[4:6, 4:6] = True  # its proxy mask is tiny ...
    inner = np.zeros((10, 10), bool)
    inner[3:7, 3:7] = True  # ... and covered by a smaller box's mask
    boxes = np.array([[0, 0, 10, 10], [3, 3, 4, 4]], float)
    result = merge_and_score(np.stack([outer, inner]), boxes, drop_threshold=0.95)
    assert not result.masks[0].any()
    assert result.confidence[0] == 0.0
    assert result.confidence[1] == 1.0
    assert result.kept.tolist() == [False, True]


def test_confidence_is_iou_of_tight_box_with_true_box():
    mask = np.zeros((10, 10), bool)
    mask[2:6, 2:4] = True  # tight box [2, 2, 2, 4]
    gt = np.array([[2, 2, 4, 4]], float)  # area 16, intersection 8
    result = merge_and_score(mask[None], gt, drop_threshold=0.4)
    assert result.confidence[0] == 0.5
    assert result.kept.tolist() == [True]


def test_tight_boxes_vectorised_match_single():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 12, 9)) > 0.97
    masks[2] = False
    expected = np.stack([mask_to_box(m) for m in masks])
    assert np.array_equal(masks_to_boxes(masks), expected)
    assert masks_to_boxes(masks)[2].tolist() == [0, 0, 0, 0]


def test_rle_round_trip_is_exact():
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (7, 13), (64, 48)]:
        mask = rng.random(shape) > 0.5
        rle = rle_encode(mask)
        assert isinstance(rle["counts"], str)
        assert np.array_equal(rle_decode(rle), mask)


def test_box_rasterisation_and_iou():
    mask = box_to_mask([2, 3, 4, 2], 8, 10)
    assert mask.sum() == 8 and mask[3:5, 2:6].all()
    assert mask_to_box(mask).tolist() == [2, 3, 4, 2]
    assert paired_box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 0, 2, 2]])).tolist() == [1 / 3]
    assert paired_box_iou(np.zeros((1, 4)), np.zeros((1, 4))).tolist() == [0.0]
