"""Stages 3 and 4 on files: batched inference equals one-by-one, the output JSON loads in
pycocotools and in mmdet's CocoDataset with masks and confidences intact, quality report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from boxcaseg.data.coco import load_json
from boxcaseg.masks import rle_decode, segmentation_to_mask
from boxcaseg.merge_drop import merge_proxy_file, proxy_quality
from boxcaseg.normalize import minmax_normalize
from boxcaseg.proxy_inference import iter_proxy_masks


def test_minmax_normalize_per_sample_and_flat_maps():
    probs = torch.tensor([[[0.2, 0.4], [0.6, 0.2]], [[0.5, 0.5], [0.5, 0.5]]])
    out = minmax_normalize(probs)
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.5], [1.0, 0.0]]))
    assert torch.equal(out[1], torch.zeros(2, 2))  # flat: nothing stands out


def test_without_normalisation_an_object_filling_its_crop_keeps_its_border():
    """Min-max stretches a crop's map to [0, 1]: a 0.45 border beside a 0.9 object and a 0.1
    background becomes 0.4375; 'none' thresholds the probabilities as they are."""
    from boxcaseg.normalize import normalize_probabilities

    probs = torch.tensor([[[0.1, 0.45, 0.9, 0.9]]])
    minmax = normalize_probabilities(probs, "minmax")
    assert torch.allclose(minmax, torch.tensor([[[0.0, 0.4375, 1.0, 1.0]]]))
    assert torch.equal(normalize_probabilities(probs, "none"), probs)
    with pytest.raises(ValueError, match="normalize"):
        normalize_probabilities(probs, "softmax")


@pytest.fixture(scope="module")
def untrained_model():
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from boxcaseg.engine import load_config

    init_default_scope("mmseg")
    torch.manual_seed(0)
    model = MODELS.build(load_config("seg/boxcaseg_hr18s_demo.py").model)
    model.init_weights()
    return model.eval()


def test_batched_inference_equals_one_by_one(untrained_model, tiny_data):
    coco = load_json(tiny_data["train_boxes"])
    batched = list(
        iter_proxy_masks(untrained_model, coco, input_size=32, batch_size=5, progress=False)
    )
    single = list(
        iter_proxy_masks(untrained_model, coco, input_size=32, batch_size=1, progress=False)
    )
    assert [b[0] for b in batched] == [img["id"] for img in coco["images"]]
    n_inst = sum(len(b[1]) for b in batched)
    assert n_inst == sum(1 for a in coco["annotations"] if not a.get("iscrowd"))
    for (img_b, ids_b, masks_b), (img_s, ids_s, masks_s) in zip(batched, single):
        assert img_b == img_s and ids_b == ids_s
        assert masks_b.shape == masks_s.shape
        # BN in eval mode: a sample's output does not depend on its batch companions
        assert (masks_b != masks_s).mean() < 1e-3


def test_window_masks_equal_the_image_frame_masks_and_their_rle(untrained_model, tiny_data):
    from boxcaseg.masks import rle_encode, rle_encode_window

    coco = load_json(tiny_data["train_boxes"])
    kw = dict(input_size=32, batch_size=4, progress=False)
    framed = list(iter_proxy_masks(untrained_model, coco, **kw))
    windowed = list(iter_proxy_masks(untrained_model, coco, windows=True, **kw))
    images = {img["id"]: img for img in coco["images"]}
    for (img_f, ids_f, masks), (img_w, ids_w, pairs) in zip(framed, windowed, strict=True):
        assert img_f == img_w and ids_f == ids_w and len(pairs) == len(masks)
        h, w = images[img_f]["height"], images[img_f]["width"]
        for mask, ((x0, y0, x1, y1), part) in zip(masks, pairs):
            assert np.array_equal(mask[y0:y1, x0:x1], part)
            assert mask.sum() == part.sum()  # nothing outside the window
            assert rle_encode_window(part, (x0, y0, x1, y1), h, w) == rle_encode(mask)


def test_masks_stay_inside_their_box_window(untrained_model, tiny_data):
    coco = load_json(tiny_data["train_boxes"])
    anns = {a["id"]: a for a in coco["annotations"]}
    for _, ann_ids, masks in iter_proxy_masks(
        untrained_model, coco, input_size=32, batch_size=8, progress=False
    ):
        for ann_id, mask in zip(ann_ids, masks):
            x, y, w, h = anns[ann_id]["bbox"]
            outside = mask.copy()
            outside[
                int(np.floor(y)) : int(np.ceil(y + h)), int(np.floor(x)) : int(np.ceil(x + w))
            ] = False
            assert not outside.any()


def test_merged_file_loads_in_pycocotools_and_mmdet_with_confidences(tiny_data, tmp_path):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    from pycocotools.coco import COCO

    import boxcaseg.mm.det  # noqa: F401

    raw = load_json(tiny_data["train_gt"])  # true masks standing in for raw proxy masks
    merged = merge_proxy_file(raw, drop_threshold=0.95)
    path = tmp_path / "proxy_masks.json"
    path.write_text(json.dumps(merged))
    assert merged["info"]["drop_threshold"] == 0.95
    anns = merged["annotations"]
    assert all(
        0.0 <= a["confidence"] <= 1.0 and a["proxy_kept"] == (a["confidence"] > 0.95) for a in anns
    )

    api = COCO(str(path))
    for ann in anns:
        assert np.array_equal(
            api.annToMask(api.anns[ann["id"]]).astype(bool), rle_decode(ann["segmentation"])
        )

    init_default_scope("mmdet")
    names = tuple(c["name"] for c in merged["categories"])
    dataset = DATASETS.build(
        dict(
            type="ConfidenceCocoDataset",
            ann_file=str(path),
            data_prefix=dict(img=merged["info"]["image_root"] + "/"),
            metainfo=dict(classes=names),
            pipeline=[
                dict(type="LoadImageFromFile"),
                dict(type="LoadAnnotationsWithConfidence", with_bbox=True, with_mask=True),
                dict(type="PackDetInputsWithConfidence"),
            ],
        )
    )
    by_image = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    for i in range(len(dataset)):
        item = dataset[i]
        gt = item["data_samples"].gt_instances
        img_id = item["data_samples"].metainfo["img_id"]
        expected = by_image[img_id]
        assert gt.confidences.tolist() == pytest.approx([a["confidence"] for a in expected])
        for mask, ann in zip(gt.masks.to_ndarray(), expected):
            assert np.array_equal(mask.astype(bool), rle_decode(ann["segmentation"]))


def test_quality_report_compares_with_truth_and_box_baseline(tiny_data):
    gt = load_json(tiny_data["train_gt"])
    merged = merge_proxy_file(gt, drop_threshold=0.95)  # perfect proxies (up to overlaps)
    quality = proxy_quality(merged, gt, 0.95)
    assert quality["instances"] == sum(1 for a in gt["annotations"] if not a.get("iscrowd"))
    assert quality["proxy"]["mean_instance_iou"] > 0.99  # demo masks do not overlap
    assert quality["box_as_mask"]["mean_instance_iou"] < quality["proxy"]["mean_instance_iou"]
    assert sum(b["instances"] for b in quality["by_confidence"]) == quality["instances"]
    kept = [a["proxy_kept"] for a in merged["annotations"]]
    assert quality["kept_fraction"] == pytest.approx(np.mean(kept))
    # a perfect mask's tight box is its true box: confidence 1, kept
    assert all(kept)


def test_fully_overwritten_proxy_is_kept_in_the_file_with_confidence_zero(tiny_data):
    gt = load_json(tiny_data["train_gt"])
    img = gt["images"][0]
    first = next(a for a in gt["annotations"] if a["image_id"] == img["id"])
    h, w = img["height"], img["width"]
    # a second, smaller box on the same image whose proxy covers the first one entirely
    x, y, bw, bh = first["bbox"]
    cover = segmentation_to_mask(first["segmentation"], h, w)
    from boxcaseg.masks import rle_encode

    gt["annotations"].append(
        {
            "id": 999,
            "image_id": img["id"],
            "category_id": first["category_id"],
            "bbox": [x, y, bw / 2, bh / 2],
            "area": 1.0,
            "iscrowd": 0,
            "segmentation": rle_encode(cover),
        }
    )
    merged = merge_proxy_file(gt, drop_threshold=0.95)
    out = {a["id"]: a for a in merged["annotations"]}
    assert out[first["id"]]["confidence"] == 0.0 and not out[first["id"]]["proxy_kept"]
    assert not rle_decode(out[first["id"]]["segmentation"]).any()  # recorded, not deleted


# --- Stage 3 at scale: shards, threads, precision ------------------------------------------------


@pytest.fixture(scope="module")
def untrained_checkpoint(untrained_model, tmp_path_factory):
    """The untrained model saved the way mmengine saves: weights + its config in meta.cfg."""
    from boxcaseg.engine import load_config

    path = tmp_path_factory.mktemp("ckpt") / "final.pth"
    cfg = load_config("seg/boxcaseg_hr18s_demo.py", {"infer_size": 32})
    torch.save({"state_dict": untrained_model.state_dict(), "meta": {"cfg": cfg.pretty_text}}, path)
    return path


def test_sharded_stage3_equals_the_unsharded_file_byte_for_byte(
    untrained_checkpoint, tiny_data, tmp_path
):
    from boxcaseg.proxy import gather_proxy_parts, run_proxy_inference

    whole = tmp_path / "proxy_raw.json"
    run_proxy_inference(
        str(untrained_checkpoint),
        str(tiny_data["train_boxes"]),
        str(whole),
        batch_size=5,
        num_workers=0,
        post_workers=0,
    )
    parts = []
    for index in range(3):
        part = tmp_path / f"part{index}.json"
        summary = run_proxy_inference(
            str(untrained_checkpoint),
            str(tiny_data["train_boxes"]),
            str(part),
            batch_size=4,
            num_workers=1,
            post_workers=2,
            shard=(index, 3),
        )
        assert summary["shard"] == [index, 3]
        parts.append(part)
    gathered = tmp_path / "gathered.json"
    gather_proxy_parts(tiny_data["train_boxes"], parts, gathered)
    assert gathered.read_bytes() == whole.read_bytes()
    raw = load_json(whole)
    assert raw["info"]["proxy"]["input_size"] == 32  # the checkpoint config's infer_size


def test_gather_refuses_a_missing_shard(untrained_checkpoint, tiny_data, tmp_path):
    from boxcaseg.data.report import DataError
    from boxcaseg.proxy import gather_proxy_parts, run_proxy_inference

    part = tmp_path / "part0.json"
    run_proxy_inference(
        str(untrained_checkpoint),
        str(tiny_data["train_boxes"]),
        str(part),
        num_workers=0,
        shard=(0, 2),
    )
    with pytest.raises(DataError, match="boxes have no proxy mask in the parts"):
        gather_proxy_parts(tiny_data["train_boxes"], [part], tmp_path / "out.json")


def test_threaded_post_processing_and_bf16_autocast(untrained_model, tiny_data):
    coco = load_json(tiny_data["train_boxes"])
    plain = list(
        iter_proxy_masks(untrained_model, coco, input_size=32, batch_size=4, progress=False)
    )
    threaded = list(
        iter_proxy_masks(
            untrained_model, coco, input_size=32, batch_size=4, progress=False, post_workers=3
        )
    )
    assert [t[0] for t in threaded] == [p[0] for p in plain]  # image order kept
    for (_, ids_p, masks_p), (_, ids_t, masks_t) in zip(plain, threaded):
        assert ids_p == ids_t and np.array_equal(masks_p, masks_t)  # fp32 result unchanged
    # bf16 autocast (the GPU path's precision switch, run here on the CPU): nearly the same masks
    bf16 = list(
        iter_proxy_masks(
            untrained_model, coco, input_size=32, batch_size=4, progress=False, precision="bf16"
        )
    )
    agree = np.mean([(a[2] == b[2]).mean() for a, b in zip(plain, bf16) if a[2].size])
    assert agree > 0.95


def test_a_crop_with_context_is_cut_back_to_its_box():
    """test_cfg.context: the crop is the box grown by that fraction per side (clipped to the
    image), its mask is resized to that window and only its part inside the box is kept."""
    from boxcaseg.crops import context_window
    from boxcaseg.proxy_inference import ImageCrops, paste_masks

    assert context_window([10, 20, 20, 10], 100, 100, 0.25) == (5, 17, 35, 33)
    assert context_window([0, 0, 20, 10], 100, 100, 0.25) == (0, 0, 25, 13)  # clipped
    box_win, crop_win = (10, 20, 30, 30), (5, 17, 35, 33)  # 20 x 10 box in a 30 x 16 crop
    probs = np.zeros((16, 30), np.float32)
    probs[:, :15] = 1.0  # the crop's left half: x 5..19 in the image
    item = ImageCrops(1, 50, 60, [7], [box_win], torch.zeros(1, 16, 30, 3), [crop_win])
    mask = paste_masks(item, [probs], 0.5)[0]
    assert mask.sum() == 10 * 10 and mask[20:30, 10:20].all()  # x 10..19 of the box, not 5..9
    ((win, part),) = paste_masks(item, [probs], 0.5, windows=True)
    assert (
        win == box_win and part.shape == (10, 20) and part[:, :10].all() and not part[:, 10:].any()
    )
