"""Instance crops: the training window, the weak label, the inference crop and its inverse."""

import numpy as np
import pytest

from boxcaseg.crops import (
    CropJitter,
    box_label_in_window,
    box_window,
    clip_window,
    crop_resize,
    paste_into_image,
    sample_training_window,
)


def test_training_windows_follow_the_jitter_ranges_and_stay_inside():
    rng = np.random.default_rng(0)
    box = [40.0, 30.0, 20.0, 10.0]  # centre (50, 35), half-sizes (10, 5)
    for _ in range(500):
        x0, y0, x1, y1 = sample_training_window(box, 100, 80, rng)
        assert 0 <= x0 < x1 <= 100 and 0 <= y0 < y1 <= 80
        # half-size in [0.5, 1.5] x 10 -> width in [10, 30], +1 px for outward rounding
        assert 10 <= x1 - x0 <= 31 and 5 <= y1 - y0 <= 16
        # centre moves at most 0.25 x half-size (+ rounding)
        assert abs((x0 + x1) / 2 - 50) <= 2.5 + 1 and abs((y0 + y1) / 2 - 35) <= 1.25 + 1


def test_no_jitter_gives_the_box_itself():
    rng = np.random.default_rng(0)
    window = sample_training_window([4, 6, 10, 8], 50, 50, rng, CropJitter(0.0, 1.0, 1.0))
    assert window == (4, 6, 14, 14)


def test_windows_are_clipped_to_the_image():
    assert clip_window(-5.2, -1, 200, 3.5, 100, 80) == (0, 0, 100, 4)
    assert box_window([95.5, 70, 30, 30], 100, 80) == (95, 70, 100, 80)


def test_weak_label_is_the_box_inside_the_window():
    label = box_label_in_window([2, 1, 3, 2], (0, 0, 8, 4), 8)  # window 8x4 -> 8x8 crop
    assert label.shape == (8, 8)
    # crop rows are half an image row tall: crop rows 2..5 are image rows 1..2; columns 2..4
    expected = np.zeros((8, 8), np.uint8)
    expected[2:6, 2:5] = 1
    assert np.array_equal(label, expected)


def test_crop_then_paste_back_is_exact_at_native_and_integer_scales():
    rng = np.random.default_rng(3)
    mask = rng.random((40, 60)) > 0.5
    window = box_window([10, 5, 20, 15], 60, 40)
    for size_factor in (1, 2, 3):  # the crop at 20x15 px: exact for nearest at integer scales
        w, h = window[2] - window[0], window[3] - window[1]
        if size_factor == 1:
            crop = mask[window[1] : window[3], window[0] : window[2]]
        else:
            import cv2

            crop = cv2.resize(
                mask[window[1] : window[3], window[0] : window[2]].astype(np.uint8),
                (w * size_factor, h * size_factor),
                interpolation=cv2.INTER_NEAREST,
            ).astype(bool)
        back = paste_into_image(crop, window, 40, 60)
        expected = np.zeros_like(mask)
        expected[window[1] : window[3], window[0] : window[2]] = mask[
            window[1] : window[3], window[0] : window[2]
        ]
        assert np.array_equal(back, expected)


def test_square_crop_of_a_square_window_round_trips_exactly():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)
    window = (5, 5, 21, 21)  # 16 x 16
    crop = crop_resize(image, window, 16)
    assert np.array_equal(crop, image[5:21, 5:21])
    back = paste_into_image(crop, window, 30, 30)
    assert np.array_equal(back[5:21, 5:21], image[5:21, 5:21]) and back[:5].sum() == 0


def test_float_maps_paste_back_bilinear():
    prob = np.full((8, 8), 0.75, np.float32)
    back = paste_into_image(prob, (2, 2, 6, 6), 10, 10)
    assert back.dtype == np.float32
    assert back[2:6, 2:6] == pytest.approx(np.full((4, 4), 0.75))
    assert back.sum() == pytest.approx(16 * 0.75)
