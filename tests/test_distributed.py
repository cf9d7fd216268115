"""The multi-GPU code path, run on CPU processes: torchrun + mmengine's `pytorch` launcher + DDP
(gloo instead of NCCL, SyncBN reverted to BN; everything else as on GPUs). Stage 2 and Stage 5
trained with 2 processes, Stage 3 sharded over 2 ranks, and the local GPU-slot allocator."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.commands import train_seg_args

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
        **extra,
    }


def torchrun(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "boxcaseg.cli",
        *args,
    ]


def records(work: Path, rank: int) -> dict[int, list[str]]:
    lines = (work / "batches" / f"rank{rank}.jsonl").read_text().splitlines()
    return {row["iter"]: row["samples"] for row in map(json.loads, lines)}


SEG_SECTION = {
    "max_iters": 30,
    "batch_size": 8,
    "box_per_batch": 5,
    "num_workers": 1,
    "seed": 3,
    "cfg_options": {
        "default_hooks.checkpoint.interval": 10,
        "default_hooks.logger.interval": 5,
        # the real-photo recipe's weight average and the mIoU* hook that grades it (rank 0)
        "custom_hooks": [
            {"type": "BatchRecordHook"},
            {
                "type": "MIoUStarHook",
                "ann_file": None,
                "interval": 0,
                "input_size": 64,
                "batch_size": 8,
            },
            {"type": "EMAHook", "momentum": 0.3, "priority": "ABOVE_NORMAL"},
        ],
    },
}


def seg_command(tiny_data, work: Path) -> list[str]:
    return torchrun(
        *train_seg_args(
            tiny_data,
            work,
            SEG_SECTION,
            checkpoint=work.parent / f"{work.name}.pth",
            metrics=work.parent / f"{work.name}.json",
        ),
        "--launcher",
        "pytorch",
    )


@pytest.fixture(scope="module")
def seg_runs(tiny_data, tmp_path_factory):
    """An uninterrupted 2-process Stage 2 run, and one killed after its iteration-10
    checkpoint and started again."""
    root = tmp_path_factory.mktemp("ddp_seg")
    whole = subprocess.run(
        seg_command(tiny_data, root / "whole"),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    work = root / "resumed"
    first = subprocess.Popen(
        seg_command(tiny_data, work),
        env=_env(),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while not (work / "last_checkpoint").is_file():
        assert first.poll() is None, "the first run ended before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.1)
    # torchrun starts its ranks in sessions of their own: kill every process of this run (the
    # work dir is on each one's command line), as a scheduler kills a job's whole cgroup
    subprocess.run(["pkill", "-KILL", "-f", str(work)], check=False)
    first.wait()
    interrupted_at = int(re.search(r"iter_(\d+)", (work / "last_checkpoint").read_text()).group(1))
    second = subprocess.run(
        seg_command(tiny_data, work),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return {
        "whole": root / "whole",
        "resumed": work,
        "interrupted_at": interrupted_at,
        "log": whole.stdout + whole.stderr,
        "resume_log": second.stdout + second.stderr,
    }


def test_two_process_stage2_ranks_split_the_data_and_keep_the_global_ratio(seg_runs):
    work = seg_runs["whole"]
    log = seg_runs["log"]
    assert "2 CPU processes (no GPU): gloo process group, DDP without device ids" in log
    assert "global 8 over 2 process(es) = 4 per process" in log
    assert "box samples per global batch 5 (per process [3, 2]), salient 3" in log
    rank0, rank1 = records(work, 0), records(work, 1)
    assert sorted(rank0) == sorted(rank1) == list(range(30))
    for it in range(30):
        both = rank0[it] + rank1[it]
        kinds = Counter("salient" if "|salient" in s else "box" for s in both)
        assert kinds == {"box": 5, "salient": 3}, (it, both)  # the global ratio, every batch
        assert len(rank0[it]) == len(rank1[it]) == 4
    # the ranks draw from disjoint halves of each pass over the data (InfiniteSampler):
    # their first batches, within the first pass, share no sample
    assert not set(rank0[0]) & set(rank1[0])
    assert [rank0[i] for i in range(30)] != [rank1[i] for i in range(30)]
    assert len({s for b in rank0.values() for s in b}) > 8  # and each sees many samples
    # one set of checkpoints, written by rank 0; the rule's output copied once
    assert sorted(p.name for p in work.glob("iter_*.pth")) == ["iter_20.pth", "iter_30.pth"]
    assert (work.parent / "whole.pth").is_file()


def test_two_process_stage2_resume_continues_the_same_stream_without_reloading(seg_runs):
    done = seg_runs["interrupted_at"]
    log = seg_runs["resume_log"]
    assert 10 <= done < 30
    assert f"resumed at iteration {done}: the sampler skipped {done} batches" in log
    assert "Advance dataloader" not in log  # mmengine's replay of every consumed batch
    for rank in (0, 1):
        resumed, whole = records(seg_runs["resumed"], rank), records(seg_runs["whole"], rank)
        assert min(i for i in resumed if i >= done) == done
        # after the resume: the very batches the uninterrupted run trained on
        assert [resumed[i] for i in range(done, 30)] == [whole[i] for i in range(done, 30)]


def test_two_process_stage2_weight_average_is_saved_graded_and_resumed(seg_runs, tiny_data):
    """The EMAHook under DDP: the checkpoint holds the average (raw weights beside it), the
    mIoU* hook on rank 0 graded the average, and a run killed and resumed restored the
    average instead of restarting it from the raw weights."""
    import torch

    from boxcaseg.data.coco import load_json
    from boxcaseg.mm.seg.model import load_segmentor
    from boxcaseg.proxy_inference import grade_in_true_boxes

    whole = seg_runs["whole"].parent
    ckpt = torch.load(whole / "whole.pth", map_location="cpu", weights_only=False)
    raw = {k.removeprefix("module."): v for k, v in ckpt["ema_state_dict"].items() if k != "steps"}
    assert raw.keys() == ckpt["state_dict"].keys()
    assert not torch.allclose(
        ckpt["state_dict"]["backbone.conv1.weight"], raw["backbone.conv1.weight"]
    )
    hook_figure = load_json(whole / "whole.json")["model"]["miou_star"]
    graded = grade_in_true_boxes(
        load_segmentor(str(whole / "whole.pth"), "cpu"),
        load_json(tiny_data["val_gt"]),
        input_size=64,
        batch_size=8,
    )
    assert hook_figure == pytest.approx(graded["model"]["miou_star"], abs=1e-9)
    # the average counts every iteration's update in both runs: the resumed one loaded the
    # count (and the average) from the checkpoint it resumed from
    resumed = torch.load(whole / "resumed.pth", map_location="cpu", weights_only=False)
    assert int(ckpt["ema_state_dict"]["steps"]) == int(resumed["ema_state_dict"]["steps"]) == 30


def test_two_process_stage5_training(tiny_data, tmp_path):
    from boxcaseg.data.coco import load_json
    from boxcaseg.merge_drop import merge_proxy_file

    proxy = merge_proxy_file(load_json(tiny_data["train_gt"]), drop_threshold=0.5)
    train = tmp_path / "proxy.json"
    train.write_text(json.dumps(proxy))
    work = tmp_path / "work"
    section = {
        "max_iters": 4,
        "batch_size": 4,
        "num_workers": 0,
        "cfg_options": {
            "default_hooks.checkpoint.interval": 2,
            "custom_hooks": [{"type": "BatchRecordHook"}],
        },
    }
    result = subprocess.run(
        torchrun(
            "train-det",
            "--config",
            "det/maskrcnn_r18_fpn_demo.py",
            "--train",
            str(train),
            "--drop-threshold",
            "0.5",
            "--work-dir",
            str(work),
            "--checkpoint-out",
            str(tmp_path / "final.pth"),
            "--launcher",
            "pytorch",
            "--section",
            json.dumps(section),
        ),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "global 4 over 2 process(es) = 2 per process" in log
    assert sorted(p.name for p in work.glob("iter_*.pth")) == ["iter_2.pth", "iter_4.pth"]
    rank0, rank1 = records(work, 0), records(work, 1)
    assert sorted(rank0) == sorted(rank1) == [0, 1, 2, 3]
    assert any(set(rank0[i]) != set(rank1[i]) for i in range(4))
    assert (tmp_path / "final.pth").is_file()


def test_two_rank_stage3_equals_one_process(tiny_data, tmp_path):
    import torch
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import boxcaseg.mm.seg  # noqa: F401
    from boxcaseg.engine import load_config

    init_default_scope("mmseg")
    cfg = load_config("seg/boxcaseg_hr18s_demo.py", {"infer_size": 32})
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    ckpt = tmp_path / "final.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {"cfg": cfg.pretty_text}}, ckpt)
    args = [
        "proxy",
        "--checkpoint",
        str(ckpt),
        "--boxes",
        str(tiny_data["train_boxes"]),
        "--section",
        json.dumps({"num_workers": 0, "batch_size": 4}),
    ]
    single = subprocess.run(
        [sys.executable, "-m", "boxcaseg.cli", *args, "--out", str(tmp_path / "one.json")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ranks = subprocess.run(
        torchrun(*args, "--out", str(tmp_path / "two.json")),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert ranks.returncode == 0, ranks.stdout[-3000:] + ranks.stderr[-3000:]
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()
    assert not list(tmp_path.glob("two.part*"))  # the parts were joined and removed


def test_local_gpu_slots_give_concurrent_jobs_different_cards(tmp_path):
    """Two one-GPU jobs at once get different cards; a third waits until one ends."""
    env = _env(BOXCASEG_LOCAL_GPUS="2", BOXCASEG_GPU_LOCKS=str(tmp_path / "locks"))
    env.pop("CUDA_VISIBLE_DEVICES")
    cmd = [
        sys.executable,
        "-m",
        "boxcaseg.gpus",
        "1",
        "sh",
        "-c",
        'echo "$CUDA_VISIBLE_DEVICES $(date +%s.%N)"; sleep 2',
    ]
    jobs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
        for _ in range(3)
    ]
    lines = [job.communicate(timeout=60)[0].strip().splitlines()[-1] for job in jobs]
    started = sorted((float(line.split()[1]), line.split()[0]) for line in lines)
    assert {started[0][1], started[1][1]} == {"0", "1"}  # the two first jobs: different cards
    assert started[2][0] - started[0][0] > 1.5  # the third job waited for a card
    chosen = subprocess.run(
        [sys.executable, "-m", "boxcaseg.gpus", "1", "sh", "-c", "echo $CUDA_VISIBLE_DEVICES"],
        env={**env, "CUDA_VISIBLE_DEVICES": "7"},
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert chosen.stdout.strip() == "7"  # the scheduler's (or the user's) choice is kept
