"""Rerunning a training as a cluster does: after it finished (a job killed between its last
checkpoint and final.pth, or ``snakemake --forcerun``), from a results folder that was moved,
and from a checkpoint that a crash cut short (boxcaseg.engine.resume_checkpoint)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from boxcaseg.engine import CheckpointError, claim_work_dir, resume_checkpoint
from tests.commands import train_seg_args

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [sys.executable, "-m", "boxcaseg.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def save_checkpoint(path: Path, value: float) -> None:
    torch.save({"state_dict": {"w": torch.tensor([value])}, "meta": {"iter": 0}}, path)


def work_dir_with(
    tmp_path: Path, iters: list[int], named: int, written_at: Path | None = None
) -> Path:
    """A work dir as mmengine leaves it: iter_N.pth files and last_checkpoint naming one of them
    by an absolute path (``written_at``: where the folder was when they were written)."""
    work = tmp_path / "work"
    work.mkdir()
    for n in iters:
        save_checkpoint(work / f"iter_{n}.pth", float(n))
    (work / "last_checkpoint").write_text(str((written_at or work) / f"iter_{named}.pth"))
    return work


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_no_last_checkpoint_means_a_fresh_start(tmp_path):
    (tmp_path / "work").mkdir()
    assert resume_checkpoint(tmp_path / "work") is None


def test_the_checkpoint_is_found_inside_a_moved_work_dir(tmp_path):
    elsewhere = tmp_path / "old_place" / "work"
    elsewhere.mkdir(parents=True)
    save_checkpoint(elsewhere / "iter_4.pth", -1.0)  # the old place still exists: not used
    work = work_dir_with(tmp_path, [2, 4], named=4, written_at=elsewhere)
    assert resume_checkpoint(work) == work / "iter_4.pth"
    shutil.rmtree(tmp_path / "old_place")  # and gone: still the folder's own
    assert resume_checkpoint(work) == work / "iter_4.pth"


def test_a_truncated_checkpoint_falls_back_to_the_previous_one_with_a_warning(tmp_path, capsys):
    work = work_dir_with(tmp_path, [2, 4], named=4)
    truncate(work / "iter_4.pth")
    assert resume_checkpoint(work) == work / "iter_2.pth"
    out = capsys.readouterr().out
    assert "WARNING" in out and str(work / "iter_4.pth") in out and "unusable" in out


def test_a_missing_checkpoint_falls_back_too(tmp_path):
    work = work_dir_with(tmp_path, [2], named=4)
    assert resume_checkpoint(work) == work / "iter_2.pth"


def test_an_empty_pointer_resumes_from_the_newest_usable_checkpoint(tmp_path, capsys):
    """A kill while mmengine rewrites last_checkpoint leaves it empty (the test that kills a
    real training met it): the newest checkpoint that loads is taken, with a warning."""
    work = work_dir_with(tmp_path, [5, 10], named=10)
    (work / "last_checkpoint").write_text("")
    assert resume_checkpoint(work) == work / "iter_10.pth"
    assert "names no checkpoint" in capsys.readouterr().out
    truncate(work / "iter_10.pth")
    assert resume_checkpoint(work) == work / "iter_5.pth"


def test_no_usable_checkpoint_is_a_clear_error_not_a_fresh_start(tmp_path):
    work = work_dir_with(tmp_path, [2, 4], named=4)
    truncate(work / "iter_2.pth")
    truncate(work / "iter_4.pth")
    with pytest.raises(CheckpointError, match=r"no usable checkpoint.*iter_4\.pth.*iter_2\.pth"):
        resume_checkpoint(work)


def test_a_later_checkpoint_than_the_named_one_is_never_taken(tmp_path):
    # iter_6 left over from another run: last_checkpoint names iter_4, so iter_6 is not a candidate
    work = work_dir_with(tmp_path, [2, 4, 6], named=4)
    truncate(work / "iter_4.pth")
    assert resume_checkpoint(work) == work / "iter_2.pth"


def claimed(tmp_path: Path, ann_text: str) -> tuple[Path, Any]:
    """A work dir claimed for a small config training on an annotation file holding
    ``ann_text``: (work dir, config)."""
    from mmengine.config import Config

    ann = tmp_path / "train.proxy.json"
    ann.write_text(ann_text)
    cfg = Config(
        dict(
            model=dict(type="Toy", pretrained="efficientnet-lite0"),
            train_dataloader=dict(dataset=dict(ann_file=str(ann), data_prefix=dict(img=""))),
            optim_wrapper=dict(optimizer=dict(lr=0.01)),
        )
    )
    work = tmp_path / "work"
    claim_work_dir(cfg, work)
    return work, cfg


def archives(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("work.previous-*"))


def test_a_work_dir_is_resumed_only_for_the_same_config_and_the_same_training_data(tmp_path):
    """Snakemake reruns the weak detector when Stage 4 rewrote the proxy masks (same path, new
    content): its work dir must not be resumed (a finished one would hand back the detector of
    the old masks), but moved aside; the same config on the same data resumes."""
    work, cfg = claimed(tmp_path, '{"annotations": [1]}')
    save_checkpoint(work / "iter_4.pth", 4.0)
    (work / "last_checkpoint").write_text(str(work / "iter_4.pth"))

    claim_work_dir(cfg, work)  # a killed job rerun: nothing changed
    assert archives(tmp_path) == [] and resume_checkpoint(work) == work / "iter_4.pth"

    Path(cfg.train_dataloader.dataset.ann_file).write_text('{"annotations": [2]}')
    claim_work_dir(cfg, work)  # new proxy masks under the same name
    (archive,) = archives(tmp_path)
    assert (archive / "iter_4.pth").is_file()  # kept, not deleted
    assert not (work / "last_checkpoint").exists()  # the rerun trains afresh


def test_a_results_folder_copied_elsewhere_with_its_data_still_resumes(tmp_path):
    """The fingerprint holds the files' content, not their paths: a run folder copied to
    scratch (its data, images folder and work dir together) resumes there."""
    (tmp_path / "images").mkdir()
    work, cfg = claimed(tmp_path, '{"annotations": [1]}')
    cfg.train_dataloader.dataset.data_prefix.img = str(tmp_path / "images")
    cfg.model.init_fn = claim_work_dir  # a value JSON cannot hold: by its name
    claim_work_dir(cfg, work)
    save_checkpoint(work / "iter_4.pth", 4.0)
    (work / "last_checkpoint").write_text(str(work / "iter_4.pth"))

    scratch = tmp_path / "scratch"
    shutil.copytree(tmp_path, scratch, ignore=shutil.ignore_patterns("scratch"))
    cfg.train_dataloader.dataset.ann_file = str(scratch / "train.proxy.json")
    cfg.train_dataloader.dataset.data_prefix.img = str(scratch / "images")
    claim_work_dir(cfg, scratch / "work")
    assert archives(scratch) == []
    assert resume_checkpoint(scratch / "work") == scratch / "work" / "iter_4.pth"


def test_a_changed_setting_also_moves_the_work_dir_aside(tmp_path):
    work, cfg = claimed(tmp_path, "{}")
    save_checkpoint(work / "iter_2.pth", 2.0)
    (work / "last_checkpoint").write_text(str(work / "iter_2.pth"))
    cfg.optim_wrapper.optimizer.lr = 0.02
    claim_work_dir(cfg, work)
    assert len(archives(tmp_path)) == 1 and not (work / "last_checkpoint").exists()


# --- real trainings -----------------------------------------------------------------------------

DET_SECTION = json.dumps(
    {
        "max_iters": 4,
        "batch_size": 2,
        "num_workers": 2,
        "seed": 1,
        "cfg_options": {
            "default_hooks.checkpoint.interval": 2,
            "custom_hooks": [{"type": "BatchRecordHook"}],
        },
    }
)
SEG_SECTION = json.dumps(
    {
        "max_iters": 4,
        "batch_size": 4,
        "box_per_batch": 2,
        "num_workers": 2,
        "seed": 1,
        "cfg_options": {"default_hooks.checkpoint.interval": 2},
    }
)


def train_det(tiny_data, work: Path, out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_cli(
        "train-det",
        "--config",
        "det/maskrcnn_r18_fpn_demo.py",
        "--train",
        str(tiny_data["train_gt"]),
        "--work-dir",
        str(work),
        "--checkpoint-out",
        str(out),
        "--section",
        DET_SECTION,
        timeout=timeout,
    )


def train_seg(tiny_data, work: Path, out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return run_cli(
        *train_seg_args(tiny_data, work, SEG_SECTION, checkpoint=out, val=False), timeout=timeout
    )


@pytest.fixture(scope="module")
def finished(tiny_data, tmp_path_factory):
    """A finished Stage 5 and a finished Stage 2 training (4 iterations, checkpoints at 2, 4)."""
    root = tmp_path_factory.mktemp("finished")
    runs = {}
    for name, train in (("det", train_det), ("seg", train_seg)):
        result = train(tiny_data, root / name / "work", root / name / "final.pth")
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        runs[name] = (train, root / name)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["det", "seg"])
def test_rerunning_a_finished_training_ends_at_once_with_the_same_checkpoint(
    tiny_data, finished, stage, tmp_path
):
    train, run = finished[stage]
    before = (run / "work" / "iter_4.pth").read_bytes()
    start = time.monotonic()
    # the hang this guards against spun for as long as it was left: 120 s is ample
    result = train(tiny_data, run / "work", tmp_path / "again.pth", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert time.monotonic() - start < 120
    assert "nothing left to train" in result.stdout + result.stderr
    assert (run / "work" / "iter_4.pth").read_bytes() == before
    assert (tmp_path / "again.pth").read_bytes() == (run / "final.pth").read_bytes()


@pytest.mark.slow
def test_a_moved_and_cut_short_work_dir_resumes_from_its_own_previous_checkpoint(
    tiny_data, finished, tmp_path
):
    train, run = finished["det"]
    moved = tmp_path / "moved" / "work"
    shutil.copytree(run / "work", moved)
    truncate(moved / "iter_4.pth")  # the crash hit while iter_4 was being written
    result = train(tiny_data, moved, tmp_path / "final.pth", timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    assert f"{moved / 'iter_4.pth'} is unusable" in log
    assert f"resuming from {moved / 'iter_2.pth'}" in log
    assert str(run / "work") not in log.replace(str(moved), "")  # never the old place
    resumed = torch.load(tmp_path / "final.pth", map_location="cpu", weights_only=False)
    assert resumed["meta"]["iter"] == 4  # iterations 3 and 4 trained again, not 1 to 4

    # on the very batches the uninterrupted run trained them on (DataLoader workers included)
    def batches(work: Path) -> dict[int, list[str]]:
        lines = (work / "batches" / "rank0.jsonl").read_text().splitlines()
        return {r["iter"]: r["samples"] for r in map(json.loads, lines)}  # the last record wins

    assert [batches(moved)[i] for i in (2, 3)] == [batches(run / "work")[i] for i in (2, 3)]


@pytest.mark.slow
def test_no_usable_checkpoint_stops_with_a_message_not_a_traceback(tiny_data, finished, tmp_path):
    train, run = finished["det"]
    broken = tmp_path / "work"
    shutil.copytree(run / "work", broken)
    for path in broken.glob("iter_*.pth"):
        truncate(path)
    result = train(tiny_data, broken, tmp_path / "final.pth", timeout=300)
    assert result.returncode == 2
    assert "no usable checkpoint" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "final.pth").exists()


def test_a_finished_run_leaves_no_visualizer_for_the_next_run_in_the_process(tmp_path):
    """mmengine hands a Runner the named visualizer of an earlier run in the same process,
    still saving into that run's (possibly deleted) work dir: a training after the BoxInst test
    failed on it. release_visualizer, called when a run ends, makes the next one build its own."""
    from types import SimpleNamespace

    from mmengine.visualization import Visualizer

    from boxcaseg.engine import release_visualizer

    def backend():  # a new list each time: Visualizer writes save_dir into the dicts it gets
        return [{"type": "LocalVisBackend"}]

    first = Visualizer.get_instance(
        "vis_test", vis_backends=backend(), save_dir=str(tmp_path / "a")
    )
    release_visualizer(SimpleNamespace(visualizer=first))
    second = Visualizer.get_instance(
        "vis_test", vis_backends=backend(), save_dir=str(tmp_path / "b")
    )
    assert second is not first and second._vis_backends["LocalVisBackend"]._save_dir.startswith(
        str(tmp_path / "b")
    )
    release_visualizer(SimpleNamespace(visualizer=second))
