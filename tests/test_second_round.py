"""Stage 2's second round: round 1's kept proxy masks as salient images, pixel by pixel."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from boxcaseg.data.report import DataError
from boxcaseg.masks import rle_encode
from boxcaseg.second_round import second_round_salient


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _proxy(ann_id, image_id, bbox, mask, kept=True):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "bbox": bbox,
        "iscrowd": 0,
        "segmentation": rle_encode(mask),
        "proxy_kept": kept,
    }


@pytest.fixture()
def round1(tmp_path):
    """Two photos on disk, Stage 1's files around them, four round 1 proxy masks: one kept
    inside the image, one kept at the image's corner (its context crop is clipped), one
    dropped by Stage 4, one on a box under min_side."""
    (tmp_path / "photos").mkdir()
    photos = {1: _photo(60, 80, 0), 2: _photo(50, 40, 1)}
    for image_id, pixels in photos.items():
        cv2.imwrite(str(tmp_path / "photos" / f"p{image_id}.png"), pixels)
    boxes = {
        "info": {"image_root": str(tmp_path / "photos")},
        "images": [
            {"id": i, "file_name": f"p{i}.png", "height": p.shape[0], "width": p.shape[1]}
            for i, p in photos.items()
        ],
        "annotations": [],
        "categories": [{"id": 1, "name": "thing"}],
    }
    inner = np.zeros((60, 80), bool)
    inner[22:38, 30:50] = True  # fills part of its box [20, 20, 40, 20]
    inner[20, 25] = True
    corner = np.zeros((50, 40), bool)
    corner[0:20, 0:16] = True  # box [0, 0, 20, 20]: the context falls off the image
    tiny = np.zeros((60, 80), bool)
    tiny[50:55, 5:12] = True
    proxies = {
        "images": boxes["images"],
        "annotations": [
            _proxy(11, 1, [20.0, 20.0, 40.0, 20.0], inner),
            _proxy(12, 1, [0.0, 0.0, 30.0, 30.0], inner, kept=False),
            _proxy(13, 1, [5.0, 50.0, 7.0, 5.0], tiny),
            _proxy(21, 2, [0.0, 0.0, 20.0, 20.0], corner),
        ],
    }
    salient = {"salient": [{"id": 4, "image": "a.jpg", "mask": "a.png"}, {"id": 7}]}
    return {"dir": tmp_path, "photos": photos, "boxes": boxes, "proxies": proxies,
            "salient": salient, "inner": inner, "corner": corner}  # fmt: skip


def _extend(round1, min_side):
    """Stage 1's salient index of the fixture extended by its proxies, crops under dir/crops."""
    return second_round_salient(
        round1["salient"],
        round1["proxies"],
        round1["boxes"],
        round1["dir"] / "crops",
        context=0.25,
        min_side=min_side,
    )


def test_kept_proxies_become_salient_crops_with_their_context(round1):
    index, counts = _extend(round1, min_side=8)
    assert counts == {
        "proxies": 4,
        "dropped_by_stage_4": 1,
        "smaller_than_min_side": 1,
        "empty": 0,
        "taken": 2,
        "salient_images": 2,
    }
    entries = index["salient"]
    assert entries[:2] == round1["salient"]["salient"]  # Stage 1's own first, unchanged
    first, second = entries[2:]
    assert [first["id"], second["id"]] == [8, 9]  # after the highest id, not the count

    # box [20, 20, 40, 20] grown by 0.25 x its size per side: x 10-70, y 15-45
    assert (first["width"], first["height"]) == (60, 30)
    image = cv2.imread(first["image"], cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(first["mask"], cv2.IMREAD_UNCHANGED)
    assert np.array_equal(image, round1["photos"][1][15:45, 10:70])  # lossless, stored pixels
    assert set(np.unique(mask)) == {0, 255}
    assert np.array_equal(mask > 0, round1["inner"][15:45, 10:70])
    assert first["bbox"] == [15.0, 5.0, 25.0, 18.0]  # the mask's tight box in the crop
    assert first["area"] == 16 * 20 + 1

    # box [0, 0, 20, 20] on a 40 x 50 photo: clipped to x 0-25, y 0-25
    assert (second["width"], second["height"]) == (25, 25)
    image = cv2.imread(second["image"], cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(second["mask"], cv2.IMREAD_UNCHANGED)
    assert np.array_equal(image, round1["photos"][2][0:25, 0:25])
    assert np.array_equal(mask > 0, round1["corner"][0:25, 0:25])


def test_no_qualifying_proxy_is_refused_with_what_was_left_out(round1):
    with pytest.raises(DataError, match="no round 1 proxy mask qualifies.*min_side"):
        _extend(round1, min_side=100)


def test_a_proxy_of_an_image_the_box_file_lacks_is_named(round1):
    round1["proxies"]["annotations"][0]["image_id"] = 99
    with pytest.raises(DataError, match="image id 99"):
        _extend(round1, min_side=8)
