"""The GPU check (scripts/gpu_check.sh, benchmarks/gpu_check.py) on a CPU: its tiny mode runs
every part's code path and writes every part's figures; without a GPU and without --tiny it
says so and exits 0. What it measures on a GPU is not tested here (no GPU in the tests)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts/gpu_check.sh"


def _gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks/gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",  # the CPU path, on any machine
        "OMP_NUM_THREADS": "1",  # two cores shared with other tests: no thread oversubscription
        "PYTHON": sys.executable,
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=600
    )


def test_without_a_gpu_it_says_so_and_exits_0(tmp_path):
    out = tmp_path / "gpu_check.json"
    result = _run("--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no GPU here" in result.stdout and "--tiny" in result.stdout
    assert not out.exists()  # nothing measured, nothing written


@pytest.mark.slow
def test_tiny_mode_runs_every_part_and_writes_its_figures(tmp_path):
    gpu_check = _gpu_check_module()
    out = tmp_path / "tiny.json"
    result = _run("--tiny", "--out", str(out))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    results = json.loads(out.read_text())
    assert results["mode"] == "tiny" and results["gpu"] is False
    assert results["device"].startswith("cpu") and results["failed"] == []
    assert gpu_check.part_problems(results, cuda=False) == []
    parts = results["parts"]
    assert list(parts) == list(gpu_check.PARTS)
    for name in ("stage2_train_fp32", "stage5_train_fp32"):
        part = parts[name]
        assert part["it_per_s"] > 0 and part["images_per_s"] > 0, part
        assert part["timed_iters"] == 1 and part["batch_size"] == 2
        assert part["optim_wrapper"] == "OptimWrapper" and "peak_gpu_mb" in part
    assert parts["stage3_proxy_fp32"]["inst_per_s"] > 0
    assert parts["stage3_proxy_fp32"]["forward_only_inst_per_s"] > 0
    assert parts["stage3_proxy_fp32"]["instances"] == results["data"]["train_instances"] > 0
    for name in ("stage2_train_amp", "stage5_train_amp", "stage3_proxy_fp16"):
        assert parts[name]["skipped"].startswith("no GPU"), parts[name]
    assert "stage2_train_fp32" in result.stdout  # the table


def test_rates_leave_out_the_warm_up_and_part_problems_name_what_is_missing():
    gpu_check = _gpu_check_module()
    rates = gpu_check.iteration_rates([5.0, 0.5, 0.5], [4.0, 0.1, 0.1], warmup=1)
    assert rates == {"timed_iters": 2, "it_per_s": 2.0, "data_time_fraction": 0.2}
    assert gpu_check.iteration_rates([3.0], [0.0], warmup=10)["timed_iters"] == 1
    skipped = {"skipped": "no GPU"}
    results = {"parts": {"stage2_train_fp32": {"it_per_s": 1.0}, "stage2_train_amp": skipped}}
    assert gpu_check.part_problems(results, cuda=False) == [
        f"{name}: missing" for name in gpu_check.PARTS[2:]
    ]
    assert "stage2_train_amp: skipped (no GPU)" in gpu_check.part_problems(results, cuda=True)


def test_the_full_check_keeps_the_paper_configs_sizes_and_batches():
    """The GPU run changes only the schedule, logging and checkpoints of the two configs:
    Stage 2 at its crops and global batch of 32 (22 box), Stage 5 at 1333 x 800 and 16."""
    from boxcaseg.engine import apply_global_batch, load_config

    gpu_check = _gpu_check_module()
    config, iters, options = gpu_check.training_options("seg", gpu_check.FULL, True)
    cfg = load_config(config, options)
    apply_global_batch(cfg, 1)
    assert (config, iters, cfg.train_cfg.max_iters) == ("seg/boxcaseg_hr48_coco.py", 40, 40)
    assert cfg.train_dataloader.batch_size == 32
    assert cfg.train_dataloader.batch_sampler.box_per_batch == 22
    assert cfg.train_dataloader.dataset.pipeline[1]["crop_size"] == 288 == cfg.crop_size
    assert cfg.infer_size == 320 and cfg.model.decode_head.in_channels == [48, 96, 192, 384]
    assert cfg.default_hooks.checkpoint.save_last is True
    config, iters, options = gpu_check.training_options("det", gpu_check.FULL, False)
    cfg = load_config(config, options)
    apply_global_batch(cfg, 1)
    assert (config, iters, cfg.train_cfg.max_iters) == ("det/maskrcnn_r50_fpn_1x_coco.py", 30, 30)
    assert cfg.train_dataloader.batch_size == 16 and cfg.model.backbone.depth == 50
    resize = next(t for t in cfg.train_dataloader.dataset.pipeline if t["type"] == "Resize")
    assert tuple(resize["scale"]) == (1333, 800)
    assert cfg.default_hooks.checkpoint.save_last is False
