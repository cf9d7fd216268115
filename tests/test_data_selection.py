"""Stage 1 options of the real-photo run: several salient sources in one run, a class filter
(`data.categories`), and derived salient sets that leave the selected classes' images alone."""

import json
from pathlib import Path

import numpy as np
import pytest

from boxcaseg.data.coco import load_json
from boxcaseg.data.prepare import prepare_dataset
from boxcaseg.data.report import DataError
from boxcaseg.masks import rle_encode
from tests.test_data_import import coco_dataset, duts_folder, write_image


def _salient_folder(tmp_path: Path, name: str, count: int) -> dict:
    from PIL import Image

    images, masks = tmp_path / name / "img", tmp_path / name / "mask"
    for k in range(count):
        write_image(images / f"{name}{k}.jpg", 12, 10)
        mask = np.zeros((10, 12), np.uint8)
        mask[2:8, 3:9] = 255
        masks.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(masks / f"{name}{k}.png")
    return {"format": "folders", "images": str(images), "masks": str(masks)}


def test_several_salient_sources_make_one_index(tmp_path):
    ann_file, images = coco_dataset(tmp_path)
    cfg = {
        "splits": {
            "train": {"format": "coco", "annotations": str(ann_file), "images": str(images)}
        },
        "salient": [
            {"format": "duts", "root": str(duts_folder(tmp_path))},
            _salient_folder(tmp_path, "davis", 3),
        ],
    }
    summary = prepare_dataset(cfg, tmp_path / "out")
    index = load_json(tmp_path / "out/salient.json")["salient"]
    assert [e["id"] for e in index] == [1, 2, 3, 4, 5]  # renumbered across sources
    assert [Path(e["image"]).stem for e in index][2:] == ["davis0", "davis1", "davis2"]
    assert summary["salient"]["pairs"] == 5 and len(summary["salient"]["sources"]) == 2
    report = load_json(tmp_path / "out/salient.report.json")
    assert len(report["sources"]) == 2


def test_a_broken_second_salient_source_is_named_and_nothing_is_written(tmp_path):
    ann_file, images = coco_dataset(tmp_path)
    cfg = {
        "splits": {
            "train": {"format": "coco", "annotations": str(ann_file), "images": str(images)}
        },
        "salient": [
            {"format": "duts", "root": str(duts_folder(tmp_path))},
            {
                "format": "folders",
                "images": str(tmp_path / "nope"),
                "masks": str(tmp_path / "nope2"),
            },
        ],
    }
    with pytest.raises(DataError, match="nope: folder does not exist"):
        prepare_dataset(cfg, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_category_filter_keeps_only_the_named_classes(tmp_path):
    ann_file, images = coco_dataset(tmp_path)  # cat (polygon + crowd) and dog (RLE)
    cfg = {
        "splits": {
            "train": {"format": "coco", "annotations": str(ann_file), "images": str(images)}
        },
        "salient": {"format": "duts", "root": str(duts_folder(tmp_path))},
        "categories": ["dog"],
    }
    summary = prepare_dataset(cfg, tmp_path / "out")
    gt = load_json(tmp_path / "out/train.gt.json")
    assert gt["categories"] == [{"id": 1, "name": "dog"}]
    assert [(a["id"], a["category_id"]) for a in gt["annotations"]] == [
        (11, 1)
    ]  # the cat crowd went too
    assert len(gt["images"]) == 2  # an image without dogs stays (a negative)
    assert summary["splits"]["train"]["per_category"] == {"dog": 1}
    assert summary["splits"]["train"]["images_without_boxes"] == 1


def test_unknown_category_is_an_error_naming_it(tmp_path):
    ann_file, images = coco_dataset(tmp_path)
    cfg = {
        "splits": {
            "train": {"format": "coco", "annotations": str(ann_file), "images": str(images)}
        },
        "salient": {"format": "duts", "root": str(duts_folder(tmp_path))},
        "categories": ["person"],
    }
    with pytest.raises(DataError, match=r"unknown class name\(s\) \['person'\]"):
        prepare_dataset(cfg, tmp_path / "out")


def test_derive_never_takes_a_selected_class_image_as_salient_source(tmp_path):
    from boxcaseg.data.derive import DeriveSpec, derive_sets

    images = tmp_path / "images"
    imgs, anns = [], []
    for k in range(6):  # every image has one dominant object; images 0-2 hold a person
        write_image(images / f"im{k}.png", 40, 30)
        imgs.append({"id": k + 1, "file_name": f"im{k}.png", "width": 40, "height": 30})
        mask = np.zeros((30, 40), bool)
        mask[5:25, 10:30] = True
        anns.append(
            {
                "id": k + 1,
                "image_id": k + 1,
                "category_id": 1 if k < 3 else 2,
                "bbox": [10, 5, 20, 20],
                "area": 400.0,
                "iscrowd": 0,
                "segmentation": rle_encode(mask),
            }
        )
    coco = {
        "info": {"image_root": str(images)},
        "images": imgs,
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
    }
    derive_sets(coco, tmp_path / "out", DeriveSpec(salient_images=6, keep_categories=("person",)))
    salient = {p.stem for p in (tmp_path / "out/salient/DUTS-TR-Image").iterdir()}
    assert salient == {"im3", "im4", "im5"}
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["counts"]["train_images"] + manifest["counts"]["val_images"] == 3
