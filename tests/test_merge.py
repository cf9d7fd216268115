"""Stage 4 merge and drop, pixel by pixel on hand-made masks."""

import numpy as np
import pytest

from boxcaseg.masks import (
    box_to_mask,
    mask_to_box,
    masks_to_boxes,
    paired_box_iou,
    rle_decode,
    rle_encode,
)
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


# --- the RLE merge (Stage 4 as it runs) equals the full-frame reference --------------------------


def _random_instances(rng, h, w, k, *, outside=False):
    """k random overlapping masks (blobs, rectangles, noise, some empty, some equal areas) and
    their boxes; with ``outside`` masks also spill outside their own box."""
    masks = np.zeros((k, h, w), bool)
    boxes = np.zeros((k, 4))
    yy, xx = np.mgrid[:h, :w]
    for i in range(k):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        bw, bh = rng.integers(1, w - x0 + 1), rng.integers(1, h - y0 + 1)
        if i % 7 == 3 and i:  # a tie: the same box area as an earlier instance
            bw, bh = boxes[i - 1, 2], boxes[i - 1, 3]
            x0, y0 = min(x0, w - int(bw)), min(y0, h - int(bh))
        boxes[i] = [x0, y0, bw, bh]
        kind = rng.integers(0, 4)
        inside = (xx >= x0) & (xx < x0 + bw) & (yy >= y0) & (yy < y0 + bh)
        if kind == 0:  # an ellipse in the box
            cx, cy = x0 + bw / 2, y0 + bh / 2
            masks[i] = ((xx + 0.5 - cx) / (bw / 2)) ** 2 + ((yy + 0.5 - cy) / (bh / 2)) ** 2 <= 1
        elif kind == 1:
            masks[i] = inside & (rng.random((h, w)) > 0.3)
        elif kind == 2:
            masks[i] = inside
        # kind 3: empty
        if outside and rng.random() < 0.5:
            masks[i] |= rng.random((h, w)) > 0.97
    return masks, boxes


def test_rle_merge_equals_full_frame_merge_pixel_for_pixel():
    from boxcaseg.merge import merge_and_score_rles

    rng = np.random.default_rng(7)
    for trial in range(300):
        h, w = (int(v) for v in rng.integers(1, 60, 2))
        k = int(rng.integers(1, 12))
        masks, boxes = _random_instances(rng, h, w, k, outside=trial % 2 == 1)
        expected = merge_and_score(masks, boxes, drop_threshold=0.5)
        got = merge_and_score_rles([rle_encode(m) for m in masks], boxes, h, w, 0.5)
        for rle, mask in zip(got.rles, expected.masks):
            assert rle == rle_encode(mask)  # the same RLE string, so the same pixels
        assert np.array_equal(got.confidence, expected.confidence)
        assert np.array_equal(got.kept, expected.kept)


def test_rle_merge_with_more_than_255_instances():
    from boxcaseg.merge import merge_and_score_rles

    rng = np.random.default_rng(3)
    masks, boxes = _random_instances(rng, 30, 40, 300)
    expected = merge_and_score(masks, boxes, drop_threshold=0.9)
    got = merge_and_score_rles([rle_encode(m) for m in masks], boxes, 30, 40, 0.9)
    assert [r["counts"] for r in got.rles] == [rle_encode(m)["counts"] for m in expected.masks]
    assert np.array_equal(got.confidence, expected.confidence)


def _reference_merge_file(raw, drop_threshold):
    """Stage 4 over a file as it was first written: full-image masks, deep copy."""
    import copy

    out = copy.deepcopy(raw)
    images = {img["id"]: img for img in out["images"]}
    for img_id in images:
        anns = [a for a in out["annotations"] if a["image_id"] == img_id]
        h, w = images[img_id]["height"], images[img_id]["width"]
        for ann in anns:
            if ann.get("iscrowd", 0):
                ann["segmentation"] = rle_encode(box_to_mask(ann["bbox"], h, w))
                ann["confidence"], ann["proxy_kept"] = 0.0, False
        inst = [a for a in anns if not a.get("iscrowd", 0)]
        if not inst:
            continue
        result = merge_and_score(
            np.stack([rle_decode(a["segmentation"]) for a in inst]),
            np.array([a["bbox"] for a in inst], float),
            drop_threshold,
        )
        for ann, mask, conf, kept in zip(inst, result.masks, result.confidence, result.kept):
            ann["segmentation"] = rle_encode(mask)
            ann["confidence"] = round(float(conf), 6)
            ann["proxy_kept"] = bool(kept)
    return out


def _random_file(rng, n_images=25):
    images, anns = [], []
    for i in range(1, n_images + 1):
        h, w = (int(v) for v in rng.integers(5, 50, 2))
        images.append({"id": i, "file_name": f"{i}.jpg", "height": h, "width": w})
        masks, boxes = _random_instances(rng, h, w, int(rng.integers(0, 9)), outside=i % 3 == 0)
        for mask, box in zip(masks, boxes):
            crowd = int(rng.random() < 0.1)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": box.tolist(),
                    "area": float(box[2] * box[3]),
                    "iscrowd": crowd,
                    **({} if crowd else {"segmentation": rle_encode(mask)}),
                }
            )
    rng.shuffle(anns)  # annotations of an image need not be next to each other
    return {
        "info": {"image_root": "/nowhere"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": 1, "name": "thing"}],
    }


def test_merge_proxy_file_equals_full_frame_reference_and_leaves_its_input_alone(monkeypatch):
    import copy

    import boxcaseg.merge_drop
    from boxcaseg.merge_drop import merge_proxy_file

    rng = np.random.default_rng(11)
    raw = _random_file(rng)
    before = copy.deepcopy(raw)
    expected = _reference_merge_file(raw, 0.8)
    expected_file = {
        **expected,
        "info": {
            **expected["info"],
            "drop_threshold": 0.8,
            "resolve_overlaps": True,
            "masks": "proxy masks (BoxCaseg Stage 4: merged, scored)",
        },
    }
    assert merge_proxy_file(raw, 0.8) == expected_file  # all images in one batch
    monkeypatch.setattr(boxcaseg.merge_drop, "MERGE_CHUNK", 7)  # a few images per batch
    assert merge_proxy_file(raw, 0.8) == expected_file
    assert raw == before  # not modified
    in_place = merge_proxy_file(raw, 0.8, inplace=True)
    assert in_place is raw and in_place["annotations"] == expected["annotations"]
    # `area` is Stage 1's (the box's), whatever the merged mask
    assert [a["area"] for a in in_place["annotations"]] == [
        a["area"] for a in before["annotations"]
    ]


def test_quality_on_rle_equals_full_frame_ious():
    from boxcaseg.masks import mask_iou, segmentation_to_mask
    from boxcaseg.merge_drop import merge_proxy_file, proxy_quality

    rng = np.random.default_rng(5)
    gt = _random_file(rng, 15)
    for ann in gt["annotations"]:  # some true masks as polygons
        if ann.get("segmentation") and ann["id"] % 2:
            x, y, w, h = ann["bbox"]
            ann["segmentation"] = [[x, y, x + w, y, x + w / 2, y + h]]
    raw = {**gt, "annotations": [dict(a) for a in gt["annotations"]]}  # noisy true masks
    for ann in raw["annotations"]:
        if "segmentation" in ann:
            img = next(i for i in gt["images"] if i["id"] == ann["image_id"])
            mask = segmentation_to_mask(ann["segmentation"], img["height"], img["width"])
            ann["segmentation"] = rle_encode(mask ^ (rng.random(mask.shape) > 0.9))
    merged = merge_proxy_file(raw, 0.5)
    quality = proxy_quality(merged, gt, 0.5)
    images = {i["id"]: i for i in gt["images"]}
    truth = {a["id"]: a for a in gt["annotations"]}
    ious, box_ious = [], []
    for ann in merged["annotations"]:
        if ann["iscrowd"] or not truth[ann["id"]].get("segmentation"):
            continue
        h, w = images[ann["image_id"]]["height"], images[ann["image_id"]]["width"]
        t = segmentation_to_mask(truth[ann["id"]]["segmentation"], h, w)
        ious.append(mask_iou(rle_decode(ann["segmentation"]), t))
        box_ious.append(mask_iou(box_to_mask(ann["bbox"], h, w), t))
    assert quality["instances"] == len(ious)
    assert quality["proxy"]["mean_instance_iou"] == float(np.mean(ious))
    assert quality["box_as_mask"]["mean_instance_iou"] == float(np.mean(box_ious))


def test_rle_codec_matches_pycocotools():
    from pycocotools import mask as mask_utils

    from boxcaseg.masks import (
        box_rle,
        counts_to_rle,
        rle_counts,
        rle_counts_many,
        rle_encode_window,
        runs_to_boxes,
    )

    rng = np.random.default_rng(2)
    batch, expected = [], []
    for trial in range(400):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        mask = rng.random((h, w)) > rng.random() if trial % 3 else np.zeros((h, w), bool)
        if trial % 5 == 1:
            mask[:] = True
        rle = rle_encode(mask)
        counts = rle_counts(rle)
        batch.append(rle if trial % 4 else {**rle, "counts": rle["counts"].encode()})
        expected.append(counts)
        assert counts_to_rle(counts, h, w) == rle
        assert np.array_equal(rle_counts({"counts": counts.tolist()}), counts)
        bounds = np.cumsum(counts)
        starts, ends = bounds[0::2][: len(counts) // 2], bounds[1::2]
        box = runs_to_boxes(starts, ends, np.zeros(len(ends), int), 1, h)[0]
        assert box.tolist() == mask_to_box(mask).tolist()
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        win = (x0, y0, int(rng.integers(x0 + 1, w + 1)), int(rng.integers(y0 + 1, h + 1)))
        only = np.zeros_like(mask)
        only[win[1] : win[3], win[0] : win[2]] = mask[win[1] : win[3], win[0] : win[2]]
        assert rle_encode_window(mask[win[1] : win[3], win[0] : win[2]], win, h, w) == rle_encode(
            only
        )
        assert rle_encode_window(mask, (0, 0, w, h), h, w) == rle
        corners = [rng.uniform(-3, w), rng.uniform(-3, h), rng.uniform(0, w), rng.uniform(0, h)]
        assert box_rle(corners, h, w) == rle_encode(box_to_mask(corners, h, w))
        assert np.array_equal(
            mask_utils.decode({"size": [h, w], "counts": rle["counts"].encode()}), mask
        )
    counts, offsets = rle_counts_many(batch)  # many at once, compressed and uncompressed mixed
    assert [counts[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])] == [
        c.tolist() for c in expected
    ]
    batch[3] = {"counts": expected[3].tolist()}
    counts, offsets = rle_counts_many(batch)
    assert np.array_equal(counts, np.concatenate(expected))


def test_rle_merge_accepts_uncanonical_runs():
    """Empty runs (other tools write them) change nothing."""
    from boxcaseg.merge import merge_and_score_rles

    mask = np.zeros((4, 3), bool)
    mask[1:3, 1] = True  # runs: 5 zeros, 2 ones, 5 zeros
    padded = {"size": [4, 3], "counts": [5, 0, 0, 2, 0, 0, 5]}
    got = merge_and_score_rles([padded], np.array([[1, 1, 1, 2]]), 4, 3, 0.5)
    assert got.rles == [rle_encode(mask)] and got.confidence.tolist() == [1.0]


def test_suggested_drop_threshold_keeps_the_bins_that_beat_their_boxes():
    from boxcaseg.metrics import confidence_bins, suggest_drop_threshold

    conf = np.array([0.3, 0.6, 0.7, 0.85, 0.92, 0.97])
    iou = np.array([0.40, 0.50, 0.52, 0.70, 0.72, 0.80])
    box = np.array([0.50, 0.55, 0.55, 0.60, 0.60, 0.60])
    bins = confidence_bins(conf, iou, box)
    assert [b["instances"] for b in bins] == [1, 2, 1, 1, 1]
    assert bins[1]["mean_iou"] == pytest.approx(0.51) and bins[1]["mean_box_iou"] == pytest.approx(
        0.55
    )
    assert suggest_drop_threshold(bins) == 0.8  # [0.8, 1] beat their boxes, [0.5, 0.8) do not
    worse = confidence_bins(conf, iou, box + 0.5)
    assert suggest_drop_threshold(worse) is None
    assert suggest_drop_threshold(confidence_bins(conf, iou, box - 0.5)) == 0.0


def test_quality_breaks_the_masks_down_by_fill_and_size_kept_ones_apart():
    """A compact object (fills its box) whose proxy is a quarter of it, and a thin L whose proxy
    is exact: by_fill puts them in the top and bottom bins, with their own IoUs and their
    boxes'; by_size puts both in COCO's small; only the kept one counts in the kept means."""
    from boxcaseg.masks import rle_encode
    from boxcaseg.merge_drop import proxy_quality

    h = w = 64
    square = np.zeros((h, w), bool)
    square[0:20, 0:20] = True  # box [0, 0, 20, 20]: fills it
    quarter = np.zeros((h, w), bool)
    quarter[0:10, 0:10] = True  # its proxy: IoU 100 / 400
    ell = np.zeros((h, w), bool)
    ell[30:50, 30:32] = True
    ell[48:50, 30:50] = True  # box [30, 30, 20, 20]: 76 of 400 pixels
    categories = [{"id": 1, "name": "thing"}]
    images = [{"id": 1, "width": w, "height": h, "file_name": "x.png"}]

    def ann(k, mask, bbox, confidence):
        return {"id": k, "image_id": 1, "category_id": 1, "bbox": bbox, "iscrowd": 0,
                "segmentation": rle_encode(mask), "confidence": confidence}  # fmt: skip

    gt = {
        "images": images,
        "categories": categories,
        "annotations": [ann(1, square, [0, 0, 20, 20], 1), ann(2, ell, [30, 30, 20, 20], 1)],
    }
    proxy = {"images": images, "categories": categories,
             "annotations": [ann(1, quarter, [0, 0, 20, 20], 0.25),
                             ann(2, ell, [30, 30, 20, 20], 1.0)]}  # fmt: skip
    quality = proxy_quality(proxy, gt, drop_threshold=0.5)
    thin, middle, compact = quality["by_fill"]
    assert (thin["bin"], middle["bin"], compact["bin"]) == (
        "[0.0, 0.5)",
        "[0.5, 0.7)",
        "over 0.7",
    )
    assert thin["instances"] == 1 and thin["mean_proxy_iou"] == 1.0
    assert thin["mean_box_iou"] == pytest.approx(76 / 400)
    assert middle["instances"] == 0 and middle["mean_proxy_iou"] is None
    assert compact["mean_proxy_iou"] == pytest.approx(0.25) and compact["mean_box_iou"] == 1.0
    assert compact["kept"] == 0 and compact["kept_mean_proxy_iou"] is None
    assert thin["kept"] == 1 and thin["kept_mean_proxy_iou"] == 1.0
    small, medium, large = quality["by_size"]
    assert (small["instances"], medium["instances"], large["instances"]) == (2, 0, 0)


def test_without_resolving_overlaps_each_box_keeps_its_own_mask_and_score():
    """merge.resolve_overlaps false: two overlapping proxies both keep the shared pixels, each
    scored against its own box as if alone (a nested small box no longer cuts into the large
    one, as it does with the paper's painting)."""
    from boxcaseg.masks import rle_encode, segmentation_to_mask
    from boxcaseg.merge_drop import merge_proxy_file

    h = w = 40
    big, small = np.zeros((h, w), bool), np.zeros((h, w), bool)
    big[5:35, 5:35] = True
    small[10:20, 10:20] = True
    raw = {
        "images": [{"id": 1, "width": w, "height": h, "file_name": "x.png"}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 30, 30], "iscrowd": 0,
             "segmentation": rle_encode(big)},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 10, 10, 10], "iscrowd": 0,
             "segmentation": rle_encode(small)},
        ],
    }  # fmt: skip
    painted = merge_proxy_file(raw, 0.5)
    kept = merge_proxy_file(raw, 0.5, resolve_overlaps=False)
    assert kept["info"]["resolve_overlaps"] is False
    masks = {a["id"]: segmentation_to_mask(a["segmentation"], h, w) for a in kept["annotations"]}
    assert np.array_equal(masks[1], big) and np.array_equal(masks[2], small)
    assert [a["confidence"] for a in kept["annotations"]] == [1.0, 1.0]
    big_painted = segmentation_to_mask(painted["annotations"][0]["segmentation"], h, w)
    assert big_painted.sum() == big.sum() - small.sum()  # the paper's rule: the small box wins
