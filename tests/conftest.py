"""Shared fixtures: a tiny prepared demo dataset (generated, no download)."""

from __future__ import annotations

from pathlib import Path

import pytest

from boxcaseg.data.prepare import prepare_dataset
from boxcaseg.data.synthetic import DemoSpec, write_demo_dataset
from boxcaseg.numerics import pin_cpu_numerics
from boxcaseg.sections import generated_data_config

pin_cpu_numerics()  # as the `boxcaseg` command does, before anything loads torch

TINY_DEMO = DemoSpec(
    seed=1,
    image_size=64,
    train_images=6,
    val_images=3,
    salient_images=6,
    min_object_size=14,
    max_object_size=30,
)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Stage 1 outputs of a tiny demo dataset: train/val box and gt files, salient index."""
    root = tmp_path_factory.mktemp("tiny")
    write_demo_dataset(root / "demo", TINY_DEMO)
    prepare_dataset(generated_data_config(root / "demo"), root / "data")
    data = root / "data"
    return {
        "root": root,
        "train_boxes": data / "train.boxes.json",
        "train_gt": data / "train.gt.json",
        "val_gt": data / "val.gt.json",
        "salient": data / "salient.json",
    }
