"""Same config + seed -> the same weights, masks and metrics, with DataLoader workers as the demo
uses them (2 persistent workers feeding Stage 2 and Stage 5), through the `boxcaseg` command.
And a different seed really gives a different model (the check is not vacuous)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.commands import train_seg_args

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def cli(*args: str) -> None:
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "2",
        "PYTHONPATH": str(REPO),
    }
    result = subprocess.run(
        [sys.executable, "-m", "boxcaseg.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def stage2_runs(tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("repro_seg")
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("other_seed", 6)):
        section = {
            "max_iters": 16,
            "batch_size": 8,
            "box_per_batch": 4,
            "num_workers": 2,
            "seed": seed,
            "cfg_options": {"default_hooks.checkpoint.interval": 8},
        }
        cli(
            *train_seg_args(
                tiny_data,
                root / name / "work",
                section,
                checkpoint=root / name / "final.pth",
                metrics=root / name / "miou.json",
            )
        )
        if name != "other_seed":
            cli(
                "proxy",
                "--checkpoint",
                str(root / name / "final.pth"),
                "--boxes",
                str(tiny_data["train_boxes"]),
                "--out",
                str(root / name / "proxy_raw.json"),
                "--section",
                json.dumps({"num_workers": 2, "batch_size": 8}),
            )
        runs[name] = root / name
    return runs


def test_stage2_and_stage3_reproduce_with_dataloader_workers(stage2_runs):
    a, b = stage2_runs["a"], stage2_runs["b"]
    assert same_weights(a / "final.pth", b / "final.pth")
    assert (a / "miou.json").read_text() == (b / "miou.json").read_text()
    proxy_a, proxy_b = (json.loads((run / "proxy_raw.json").read_text()) for run in (a, b))
    assert proxy_a["annotations"] == proxy_b["annotations"]  # every mask, RLE for RLE


def test_another_seed_gives_another_model(stage2_runs):
    assert not same_weights(stage2_runs["a"] / "final.pth", stage2_runs["other_seed"] / "final.pth")


def test_stage5_reproduces_with_dataloader_workers(tiny_data, tmp_path):
    from boxcaseg.data.coco import load_json
    from boxcaseg.merge_drop import merge_proxy_file

    train = tmp_path / "proxy.json"
    train.write_text(json.dumps(merge_proxy_file(load_json(tiny_data["train_gt"]), 0.5)))
    section = json.dumps(
        {
            "max_iters": 6,
            "batch_size": 2,
            "num_workers": 2,
            "seed": 3,
            "cfg_options": {
                "default_hooks.checkpoint.interval": 3,
                "test_dataloader.num_workers": 2,
            },
        }
    )
    for name in ("a", "b"):
        cli(
            "train-det",
            "--config",
            "det/maskrcnn_r18_fpn_demo.py",
            "--train",
            str(train),
            "--drop-threshold",
            "0.5",
            "--work-dir",
            str(tmp_path / name / "work"),
            "--checkpoint-out",
            str(tmp_path / name / "final.pth"),
            "--section",
            section,
        )
        cli(
            "eval-det",
            "--config",
            "det/maskrcnn_r18_fpn_demo.py",
            "--checkpoint",
            str(tmp_path / name / "final.pth"),
            "--gt",
            str(tiny_data["val_gt"]),
            "--out-dir",
            str(tmp_path / name / "val"),
            "--metrics-out",
            str(tmp_path / name / "m.json"),
            "--section",
            section,
        )
    assert same_weights(tmp_path / "a/final.pth", tmp_path / "b/final.pth")
    for kind in ("bbox", "segm"):
        assert (tmp_path / f"a/val/predictions.{kind}.json").read_bytes() == (
            tmp_path / f"b/val/predictions.{kind}.json"
        ).read_bytes()
