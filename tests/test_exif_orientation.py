"""Phone photos with an EXIF orientation tag: every stage reads the pixels AS STORED, the one
policy of boxcaseg/data/images.py, so a box in stored pixels lies on its object in Stage 1,
in the segmenter's and the detector's loading pipelines, in Stage 3's crops and in GrabCut."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from boxcaseg.configs import packaged_configs
from boxcaseg.data.coco import import_coco
from boxcaseg.data.report import DataError
from boxcaseg.data.yolo_seg import import_yolo_seg
from boxcaseg.engine import load_config

STORED_H, STORED_W = 48, 64
OBJECT = (10, 8, 30, 12)  # x, y, w, h of the bright rectangle, in stored pixels


def tagged_jpeg(path: Path, orientation: int = 6) -> Path:
    """A 64 x 48 (stored) JPEG with a bright rectangle at OBJECT and an EXIF tag that says
    "show rotated by 90 degrees" (shown 48 x 64)."""
    pixels = np.full((STORED_H, STORED_W, 3), 30, np.uint8)
    x, y, w, h = OBJECT
    pixels[y : y + h, x : x + w] = 230
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)
    return path


@pytest.fixture()
def photo(tmp_path: Path) -> Path:
    (tmp_path / "images").mkdir()
    path = tagged_jpeg(tmp_path / "images" / "phone.jpg")
    # the premise: OpenCV's default read applies the tag (what mmcv's 'color' flag does)
    assert cv2.imread(str(path)).shape[:2] == (STORED_W, STORED_H)
    return path


def coco_file(tmp_path: Path, width: int, height: int) -> Path:
    x, y, w, h = OBJECT
    coco = {
        "images": [{"id": 1, "file_name": "phone.jpg", "width": width, "height": height}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [x, y, w, h],
                "area": w * h,
                "iscrowd": 0,
                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
            }
        ],
        "categories": [{"id": 1, "name": "object"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    return path


def test_stage1_takes_a_tagged_photo_in_stored_pixels(tmp_path, photo):
    coco, report = import_coco(coco_file(tmp_path, STORED_W, STORED_H), tmp_path / "images")
    report.raise_if_errors()
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (STORED_W, STORED_H)


def test_an_annotation_of_the_rotated_view_is_refused_by_name(tmp_path, photo):
    coco, report = import_coco(coco_file(tmp_path, STORED_H, STORED_W), tmp_path / "images")
    with pytest.raises(DataError) as err:
        report.raise_if_errors()
    text = str(err.value)
    assert "phone.jpg" in text and "48x64" in text and "EXIF orientation tag 6" in text


def test_yolo_labels_on_a_tagged_photo_are_refused_by_name(tmp_path, photo):
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "phone.txt").write_text("0 0.2 0.2 0.6 0.2 0.6 0.5 0.2 0.5\n")
    coco, report = import_yolo_seg(tmp_path / "images", tmp_path / "labels", ["object"])
    with pytest.raises(DataError, match=r"phone\.jpg.*EXIF orientation tag 6"):
        report.raise_if_errors()


@pytest.mark.parametrize("config", packaged_configs())
def test_every_packaged_pipeline_reads_stored_pixels(config):
    cfg = load_config(config)
    loaders = []
    for loader in ("train_dataloader", "test_dataloader"):
        dataset = (cfg.get(loader) or {}).get("dataset") or {}
        loaders += [t for t in dataset.get("pipeline", []) if t["type"] == "LoadImageFromFile"]
    assert loaders, f"{config}: no LoadImageFromFile found"
    assert all(t.get("color_type") == "color_ignore_orientation" for t in loaders), loaders


def test_detector_and_segmenter_pipelines_see_the_stored_pixels(photo):
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    import boxcaseg.mm.det  # noqa: F401
    import boxcaseg.mm.seg  # noqa: F401

    init_default_scope("mmdet")
    det = load_config("det/maskrcnn_lite0_fpn_real_cpu.py")
    packed = Compose(det.test_dataloader.dataset.pipeline)(dict(img_path=str(photo), img_id=1))
    assert packed["data_samples"].ori_shape == (STORED_H, STORED_W)
    init_default_scope("mmseg")
    seg = load_config("seg/boxcaseg_lite0_real_cpu.py")
    loaded = Compose(seg.train_pipeline[:1])(dict(img_path=str(photo)))
    assert loaded["img"].shape[:2] == (STORED_H, STORED_W)
    x, y, w, h = OBJECT  # and the object is where the stored-pixel box says
    assert loaded["img"][y : y + h, x : x + w].mean() > 200 and loaded["img"][:y].mean() < 60


def test_stage3_crops_and_grabcut_read_the_stored_pixels(tmp_path, photo):
    from boxcaseg.baselines import grabcut_raw_masks
    from boxcaseg.grabcut import GrabCutSpec
    from boxcaseg.proxy_inference import _ImageCropDataset

    coco, report = import_coco(coco_file(tmp_path, STORED_W, STORED_H), tmp_path / "images")
    report.raise_if_errors()
    crops = _ImageCropDataset(coco, input_size=16)[0].crops
    assert crops.shape == (1, 16, 16, 3) and crops.float().mean() > 200  # all object, no background
    masks = grabcut_raw_masks({k: v for k, v in coco.items()}, GrabCutSpec(iterations=2))
    from boxcaseg.masks import rle_decode

    mask = rle_decode(masks["annotations"][0]["segmentation"])
    assert mask.shape == (STORED_H, STORED_W)
