"""The config schema states each input format's keys (one branch per format): what a user
writes for each format validates, a key of another format or a missing one is refused before
anything runs."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SCHEMA = str(Path(__file__).resolve().parents[1] / "schemas/config.schema.yaml")

GOOD_SPLITS = [
    {"format": "coco", "annotations": "a.json", "images": "img"},
    {"format": "voc", "root": "VOC2012", "split": "train", "names": "voc"},
    {"format": "voc", "root": "VOC2012"},
    {"format": "yolo_seg", "images": "img", "labels": "lab", "names": ["person", "car"]},
    {"format": "yolo_seg", "images": "img", "labels": "lab", "names": "coco80"},
    {
        "format": "instance_png",
        "images": "img",
        "masks": "m",
        "mask_suffix": "_mask",
        "classes": ["cat", "dog"],
        "names": ["cat", "dog"],
    },
    {"format": "instance_png", "images": "img", "masks": "m", "classes": "person"},
    {"format": "labelme", "root": "lm"},
]
BAD_SPLITS = [
    {"format": "coco", "annotations": "a.json", "images": "img", "labels": "lab"},  # yolo's key
    {"format": "coco", "annotations": "a.json"},  # images missing
    {"format": "yolo_seg", "images": "img", "labels": "lab"},  # names missing
    {"format": "voc", "root": "VOC2012", "names": []},  # no class name
    {"format": "cityscapes", "root": "x"},  # unknown format
    {"format": "instance_png", "images": "img", "masks": "m", "mask_suffix": 3},
]


def config_with(splits=None, salient=None) -> dict:
    data = {"source": "files", "splits": {"train": splits or GOOD_SPLITS[0]}}
    if salient is not None:
        data["salient"] = salient
    return {"run_name": "t", "data": data}


@pytest.mark.parametrize("split", GOOD_SPLITS)
def test_each_formats_keys_validate(split):
    validate(copy.deepcopy(config_with(split, {"format": "duts", "root": "DUTS-TR"})), SCHEMA)


@pytest.mark.parametrize("split", BAD_SPLITS)
def test_a_wrong_or_missing_key_is_refused(split):
    with pytest.raises(WorkflowError):
        validate(copy.deepcopy(config_with(split)), SCHEMA)


def test_salient_sources_one_or_a_list():
    folders = {"format": "folders", "images": "i", "masks": "m"}
    validate(config_with(salient=folders), SCHEMA)
    validate(config_with(salient=[folders, {"format": "duts", "root": "d"}]), SCHEMA)
    for bad in ({"format": "folders", "images": "i"}, [{"format": "duts"}], {"format": "x"}):
        with pytest.raises(WorkflowError):
            validate(config_with(salient=bad), SCHEMA)
