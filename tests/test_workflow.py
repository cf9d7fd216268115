"""The workflow as a user runs it: snakemake's own CLI on a tiny configuration.

One interrupted-then-resumed run of the whole DAG (module fixture), then checks on what it
produced, on what a config edit reruns (from snakemake's own dry-run output), and on the
report. Dry-run and lint of the shipped config are quick and run always.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]

# The tiny configuration: the whole DAG on 6 generated 64 px images. A file, as the
# snakemake-workflows convention has it, to run by hand too (the command is in the file).
TINY_CONFIG = yaml.safe_load((REPO / ".test/config/config.yaml").read_text())
# the tiny run adds the weak detector over a folder of "new photos" (two images and an
# unreadable file, written by the fixture: write_new_photos)
TINY_RUN_CONFIG = {**TINY_CONFIG, "predict": {"images": "new_photos"}}


def write_new_photos(folder: Path) -> list[str]:
    """Two images the run never saw (a bright square on noise) and one file that is no image."""
    import numpy as np
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(7)
    for k, size in enumerate([(64, 48), (40, 72)]):  # (height, width)
        pixels = rng.integers(0, 80, (*size, 3), dtype=np.uint8)
        pixels[8:30, 10:34] = 230
        Image.fromarray(pixels).save(folder / f"photo{k}.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return ["photo0.png", "photo1.png"]


def run_snakemake(workdir: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [*SNAKEMAKE, "-d", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def listed_jobs(output: str) -> list[tuple[str, str]]:
    """(`rule[variant]`, its block) for every job in snakemake's own listing, in its order."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        match = re.match(r"(?:local)?rule (\w+):", block)
        if match:
            variant = re.search(r"wildcards: variant=(\w+)", block)
            jobs.append((match.group(1) + (f"[{variant.group(1)}]" if variant else ""), block))
    return jobs


def planned_jobs(output: str) -> list[str]:
    """`rule[variant]` for every job of a dry run, the target rule `all` left out."""
    return sorted(name for name, _ in listed_jobs(output) if name != "all")


def test_dry_run_and_lint_of_the_shipped_config(tmp_path):
    dry = run_snakemake(REPO, "-n", "--cores", "2", timeout=300)
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = planned_jobs(dry.stdout + dry.stderr)
    if jobs:  # on a clean clone nothing has run yet: the whole DAG is planned
        assert set(jobs) <= {
            "demo_dataset",
            "prepare_data",
            "train_segmentation",
            "proxy_masks",
            "merge_drop",
            "box_masks",
            "grabcut_masks",
            "summary",
            *(
                f"{r}[{v}]"
                for r in ("train_detection", "evaluate_detection")
                for v in ("weak", "full", "box", "grabcut", "boxinst")
            ),
        }
    lint = run_snakemake(REPO, "--lint", timeout=300)
    assert lint.returncode == 0
    assert "Congratulations, your workflow is in a good condition!" in lint.stdout + lint.stderr


def test_invalid_config_is_refused_by_the_schema(tmp_path):
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({**TINY_CONFIG, "merge": {"drop_threshold": 2}})
    )
    result = run_snakemake(tmp_path, "-n", timeout=300)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "drop_threshold" in output and "2 is greater than the maximum of 1" in output


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The whole DAG on the tiny config, with the segmentation job killed midway once."""
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config.yaml").write_text(yaml.safe_dump(TINY_RUN_CONFIG))
    write_new_photos(workdir / "new_photos")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    first = subprocess.Popen(
        [*SNAKEMAKE, "-d", str(workdir), "--cores", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seg_work = workdir / "results/tiny/segmentation/work"
    deadline = time.time() + 600
    while not (seg_work / "last_checkpoint").exists():
        assert first.poll() is None, (
            "the workflow ended before it could be interrupted:\n" + first.stdout.read()[-3000:]
        )
        assert time.time() < deadline
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the whole job tree, as a crash or a scheduler would
    first.wait()
    interrupted_at = Path((seg_work / "last_checkpoint").read_text().strip()).name
    # a killed snakemake leaves its lock behind: what a user does next
    unlock = run_snakemake(workdir, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    second = run_snakemake(workdir, "--cores", "2")
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    return {
        "dir": workdir,
        "out": workdir / "results/tiny",
        "interrupted_at": interrupted_at,
        "second": second.stdout + second.stderr,
    }


@pytest.mark.slow
def test_killed_training_resumes_and_earlier_stages_are_not_rerun(tiny_run):
    log = tiny_run["second"]
    assert "rule train_segmentation:" in log
    assert "rule demo_dataset:" not in log and "rule prepare_data:" not in log
    seg_log = (tiny_run["out"] / "logs/train_segmentation.log").read_text()
    iteration = int(re.search(r"iter_(\d+)", tiny_run["interrupted_at"]).group(1))
    assert f"resumed epoch: 0, iter: {iteration}" in seg_log
    assert "Iter(train) [ 10/200]" not in seg_log or iteration < 10


@pytest.mark.slow
def test_run_produces_every_stage_output(tiny_run):
    from pycocotools.coco import COCO

    from boxcaseg.metrics import coco_evaluate

    out = tiny_run["out"]
    for rel in (
        "data/train.boxes.json",
        "data/val.gt.json",
        "data/dataset_summary.png",
        "segmentation/final.pth",
        "segmentation/loss_curve.png",
        "proxy/proxy_masks.json",
        "proxy/overlays.png",
        "summary/results.md",
        "summary/ap_table.png",
        "summary/quality_breakdown.png",
    ):
        assert (out / rel).is_file() and (out / rel).stat().st_size > 0, rel
    assert "segmentation" not in (out / "data/train.boxes.json").read_text()
    proxy = COCO(str(out / "proxy/proxy_masks.json"))
    assert all("confidence" in a and "segmentation" in a for a in proxy.anns.values())
    seg = json.loads((out / "segmentation/miou_star.json").read_text())
    assert 0 <= seg["model"]["miou_star"] <= 1
    for variant in ("weak", "full", "box", "grabcut", "boxinst"):
        metrics = json.loads((out / f"detection/{variant}/metrics.json").read_text())
        # the results file is a COCO results file pycocotools accepts: re-score it
        again = coco_evaluate(str(out / "data/val.gt.json"), metrics["predictions"]["segm"], "segm")
        assert again == metrics["segm"]
    summary = json.loads((out / "summary/results.json").read_text())
    assert [row["model"] for row in summary["ap"]] == [
        "BoxCaseg (proxy masks)",
        "fully supervised (true masks)",
        "box as mask",
        "GrabCut masks",
        "BoxInst (mmdet, boxes only)",
    ]
    assert [row["masks"] for row in summary["mask_quality"]] == [
        "salient head, val (mIoU*)",
        "proxy masks, train (mIoU*)",
        "GrabCut masks, train (mIoU*)",
        *(f"Mask R-CNN mask head, {v}, val (mIoU*)" for v in ("weak", "full", "box", "grabcut")),
    ]
    # BoxInst has no RoI mask head to give boxes to
    assert (
        json.loads((out / "detection/boxinst/metrics.json").read_text())["mask_head_in_true_boxes"]
        is None
    )
    grabcut = json.loads((out / "proxy/grabcut_quality.json").read_text())["quality"]
    assert (
        grabcut["instances"]
        == json.loads((out / "proxy/quality.json").read_text())["quality"]["instances"]
    )
    for name in ("train_segmentation", "proxy_masks", "train_detection_weak"):
        assert (out / f"benchmarks/{name}.tsv").read_text().startswith("s\t")
    # each detector's training cost beside its AP: BoxCaseg's route is Stage 2 + 3 + 4 + its
    # Mask R-CNN, the sum of those jobs' benchmark files
    from boxcaseg.summary import job_cost

    route = job_cost([str(out / f"benchmarks/{n}.tsv") for n in
                      ("train_segmentation", "proxy_masks", "merge_drop", "train_detection_weak")])  # fmt: skip
    weak = summary["ap"][0]
    assert weak["train wall s"] == round(route["wall_s"]) and weak["train CPU s"] > 0
    assert summary["costs"]["boxinst"]["wall_s"] > 0
    assert (
        "equal compute is detection.boxinst_equal_ratio = "
        in (out / "summary/results.md").read_text()
    )
    quality = json.loads((out / "proxy/quality.json").read_text())["quality"]
    assert sum(row["instances"] for row in quality["by_fill"]) == quality["instances"]
    assert sum(row["instances"] for row in quality["by_size"]) == quality["instances"]


@pytest.mark.slow
def test_nothing_to_do_after_a_complete_run(tiny_run):
    dry = run_snakemake(tiny_run["dir"], "-n", "--cores", "2")
    assert dry.returncode == 0
    assert planned_jobs(dry.stdout + dry.stderr) == []
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "section, key, value, expected",
    [
        (
            "merge",
            "drop_threshold",
            0.9,
            [
                "evaluate_detection[weak]",
                "merge_drop",
                "predict_images",
                "summary",
                "train_detection[weak]",
            ],
        ),
        (
            "proxy",
            "threshold",
            0.4,
            [
                "evaluate_detection[weak]",
                "merge_drop",
                "predict_images",
                "proxy_masks",
                "summary",
                "train_detection[weak]",
            ],
        ),
        (
            "segmentation",
            "lr",
            0.01,
            [
                "evaluate_detection[weak]",
                "merge_drop",
                "predict_images",
                "proxy_masks",
                "summary",
                "train_detection[weak]",
                "train_segmentation",
            ],
        ),
        (  # round 1 added before the stages it feeds; nothing of Stage 1 or the baselines
            "segmentation",
            "second_round",
            {"enabled": True},
            [
                "evaluate_detection[weak]",
                "merge_drop",
                "merge_drop_round1",
                "predict_images",
                "proxy_masks",
                "proxy_masks_round1",
                "second_round_salient",
                "summary",
                "train_detection[weak]",
                "train_segmentation",
                "train_segmentation_round1",
            ],
        ),
        (
            "detection",
            "lr",
            0.01,
            [
                "evaluate_detection[box]",
                "evaluate_detection[boxinst]",
                "evaluate_detection[full]",
                "evaluate_detection[grabcut]",
                "evaluate_detection[weak]",
                "predict_images",
                "summary",
                "train_detection[box]",
                "train_detection[boxinst]",
                "train_detection[full]",
                "train_detection[grabcut]",
                "train_detection[weak]",
            ],
        ),
        (
            "grabcut",
            "iterations",
            3,
            ["evaluate_detection[grabcut]", "grabcut_masks", "summary", "train_detection[grabcut]"],
        ),
        (
            "detection",
            "boxinst_config",
            "det/boxinst_r18_fpn_real_cpu.py",
            ["evaluate_detection[boxinst]", "summary", "train_detection[boxinst]"],
        ),
    ],
)
def test_a_config_edit_reruns_exactly_its_stage_and_descendants(
    tiny_run, tmp_path, section, key, value, expected
):
    edited = json.loads(json.dumps(TINY_RUN_CONFIG))
    edited.setdefault(section, {})[key] = value
    config = tmp_path / "edited.yaml"
    config.write_text(yaml.safe_dump(edited))
    dry = run_snakemake(tiny_run["dir"], "-n", "--cores", "2", "--configfile", str(config))
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert planned_jobs(dry.stdout + dry.stderr) == expected


@pytest.mark.slow
def test_html_report(tiny_run):
    report = tiny_run["out"] / "report.html"
    result = run_snakemake(tiny_run["dir"], "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 10_000
    for name in (
        "overlays.png",
        "ap_table.png",
        "loss_curve.png",
        "dataset_summary.png",
        "New photos",
        "photo0.png",
        "photo1.png",
    ):  # predict.images' overlays too
        assert name in html


def test_cluster_example_plans_its_gpu_jobs_through_the_slurm_profile(tmp_path):
    """config/slurm_coco.yaml (README, "GPUs and SLURM") through the SLURM profile, a dry run:
    the profile's per-rule threads and GPUs (set-threads, set-resources) reach each job's
    resources (what the plugin turns into sbatch options) AND its launch: Stage 2 on one 4-GPU
    node through torchrun, Stage 3 as 16 one-GPU jobs and a gather, the detectors on 8 GPUs.
    (A dry run without --cores caps every job at one thread; a real submission does not.)"""
    example = yaml.safe_load((REPO / "config/slurm_coco.yaml").read_text())
    for name, split in example["data"]["splits"].items():  # stand-ins for the COCO files
        split["annotations"] = str(tmp_path / f"{name}.json")
        Path(split["annotations"]).write_text("{}")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(example))
    dry = run_snakemake(
        tmp_path,
        "-n",
        "--workflow-profile",
        str(REPO / "profiles/slurm"),
        "--slurm-no-account",
        "--cores",
        "64",
        "-p",
    )
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    jobs = planned_jobs(output)
    assert jobs.count("proxy_masks") == 16 and "gather_proxy_masks" in jobs
    blocks = job_blocks(output)
    seg = blocks["train_segmentation"]
    assert (
        re.search(r"resources:.*\bgpu=4\b", seg)
        and "gpu_model=a100" in seg
        and "cpus_per_gpu=8" in seg
    )
    assert "mem_mb=128000" in seg and "runtime=2880" in seg
    assert (
        "torch.distributed.run --standalone --nproc_per_node=4" in seg
        and "--launcher pytorch" in seg
    )
    assert "threads: 32" in seg and "OMP_NUM_THREADS=8 " in seg  # 32 threads over 4 processes
    shard = blocks["proxy_masks"]
    assert re.search(r"\bgpu=1\b", shard) and "--shards 16" in shard and "mem_mb=32000" in shard
    assert "OMP_NUM_THREADS=8 python -m boxcaseg.gpus 1" in shard  # under SLURM: its own card
    det = blocks["train_detection"]
    assert re.search(r"\bgpu=8\b", det) and "--nproc_per_node=8" in det
    assert "OMP_NUM_THREADS=8 " in det  # 64 threads over 8 processes
    # a rule the profile does not name keeps its own default, on the CPU
    assert "OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES= " in blocks["merge_drop"]


def job_blocks(output: str) -> dict[str, str]:
    """A dry run's (`-p`) listing as rule name -> the first job's block (with its command)."""
    blocks = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        if match := re.match(r"(?:local)?rule (\w+):", block):
            blocks.setdefault(match.group(1), block)
    return blocks


def test_the_jobs_own_threads_and_resources_drive_its_launch(tmp_path):
    """What Snakemake settles for a job (the rule's defaults, a profile, the command line's
    --set-threads / --set-resources, --cores) is what its command runs with: OMP threads, GPU
    selection, torchrun processes. (Once the launch came from the config's own `resources:`
    section and a job booked 2 threads and a GPU while training on one thread without one.)"""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    target = "results/tiny/segmentation/final.pth"
    dry = run_snakemake(
        tmp_path, target, "-n", "-p", "--forceall", "--cores", "2",
        "--set-threads", "train_segmentation=2",
        "--set-resources", "train_segmentation:gpu=1", "train_segmentation:mem_mb=9999",
    )  # fmt: skip
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    seg = job_blocks(output)["train_segmentation"]
    assert "threads: 2" in seg and re.search(r"resources:.*\bgpu=1\b", seg)
    assert "mem_mb=9999" in seg
    assert "OMP_NUM_THREADS=2 python -m boxcaseg.gpus 1 python -m boxcaseg.cli train-seg" in seg
    assert "CUDA_VISIBLE_DEVICES=" not in seg and "--launcher" not in seg

    # processes: 2 CPU processes through torchrun, the job's 2 threads shared between them
    dry = run_snakemake(
        tmp_path, target, "-n", "-p", "--forceall", "--cores", "2",
        "--set-threads", "train_segmentation=2",
        "--set-resources", "train_segmentation:processes=2",
    )  # fmt: skip
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    seg = job_blocks(output)["train_segmentation"]
    assert "OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES= python -m torch.distributed.run" in seg
    assert "--nproc_per_node=2 -m boxcaseg.cli train-seg" in seg and "--launcher pytorch" in seg

    # --cores caps what is asked for: 4 threads on a one-core run are one
    dry = run_snakemake(
        tmp_path, target, "-n", "-p", "--forceall", "--cores", "1",
        "--set-threads", "train_segmentation=4",
    )  # fmt: skip
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    seg = job_blocks(output)["train_segmentation"]
    assert "OMP_NUM_THREADS=1 CUDA_VISIBLE_DEVICES= python -m boxcaseg.cli train-seg" in seg

    # nothing set: the rules' defaults on 4 cores, Stage 2 on all of them, each detector on half
    dry = run_snakemake(tmp_path, "-n", "-p", "--forceall", "--cores", "4")
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    blocks = job_blocks(output)
    assert "OMP_NUM_THREADS=4 CUDA_VISIBLE_DEVICES=" in blocks["train_segmentation"]
    assert "OMP_NUM_THREADS=2 CUDA_VISIBLE_DEVICES=" in blocks["train_detection"]


def test_a_config_with_the_old_resources_section_is_refused_by_name(tmp_path):
    (tmp_path / "config.yaml").write_text(
        yaml.safe_dump({**TINY_CONFIG, "resources": {"default": {"threads": 1}}})
    )
    result = run_snakemake(tmp_path, "-n", timeout=300)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "the `resources:` section is gone" in output and "--set-threads" in output


def test_the_weak_detectors_chain_is_scheduled_before_the_baselines(tmp_path):
    """Stage 2 -> 3 -> 4 -> weak Mask R-CNN -> its evaluation is the longest chain of the DAG:
    each of its jobs carries the critical-path priority, the baselines (ready from the start,
    independent of Stage 2) none, so with two free slots a baseline never takes the slot the
    weak detector was waiting for (it did once: the demo ran 77 s longer)."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    dry = run_snakemake(tmp_path, "-n", "--cores", "2")
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output[-3000:]
    priorities = {}
    for name, block in listed_jobs(output):
        priority = re.search(r"priority: (\d+)", block)
        priorities[name] = int(priority.group(1)) if priority else 0
    chain = [
        "train_segmentation",
        "proxy_masks",
        "merge_drop",
        "train_detection[weak]",
        "evaluate_detection[weak]",
    ]
    assert all(priorities[job] == 10 for job in chain), priorities
    baselines = [
        job for job in priorities if re.match(r"(train|evaluate)_detection\[(?!weak)", job)
    ]
    assert baselines and all(priorities[job] == 0 for job in baselines), priorities


# --- using what the run trained (boxcaseg predict, masks-from-boxes) -----------------------------


def run_cli(*args: str, timeout: int = 600, threads: int = 1) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": str(threads)}
    return subprocess.run(
        [sys.executable, "-m", "boxcaseg.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def sorted_results(path: Path) -> list[dict]:
    return sorted(
        json.loads(path.read_text()), key=lambda r: (r["image_id"], -r["score"], r["bbox"])
    )


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["weak", "boxinst"])
def test_predict_reproduces_the_evaluation(tiny_run, tmp_path, variant):
    """`boxcaseg predict` over the val split: the evaluation's very detections and scores (with
    the thread count the evaluate job ran with, read from the run's own log: another count
    moves scores in the 8th digit)."""
    out = tiny_run["out"]
    evaluate = next(
        b for name, b in listed_jobs(tiny_run["second"]) if name == f"evaluate_detection[{variant}]"
    )
    threads = int(re.search(r"OMP_NUM_THREADS=(\d+)", evaluate).group(1))
    result = run_cli(
        "predict",
        str(out / "data/val.gt.json"),
        "--checkpoint",
        str(out / f"detection/{variant}/final.pth"),
        "--out-dir",
        str(tmp_path / "p"),
        threads=threads,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for kind in ("bbox", "segm"):
        evaluated = sorted_results(out / f"detection/{variant}/val/predictions.{kind}.json")
        if variant == "weak":  # the tiny BoxInst may detect nothing after 4 iterations
            assert evaluated, "the tiny detector detected nothing: the comparison would be empty"
        assert sorted_results(tmp_path / "p" / f"predictions.{kind}.json") == evaluated


@pytest.mark.slow
def test_predict_rule_over_a_folder_of_new_photos(tiny_run):
    from pycocotools.coco import COCO

    predict = tiny_run["out"] / "predict"
    report = json.loads((predict / "predict.report.json").read_text())
    assert report["images"] == 2
    assert [
        (Path(p["file_name"]).name, p["problem"].split(" (")[0]) for p in report["skipped"]
    ] == [("broken.jpg", "corrupt or unreadable image")]
    images = COCO(str(predict / "images.json"))
    assert sorted(Path(i["file_name"]).name for i in images.imgs.values()) == [
        "photo0.png",
        "photo1.png",
    ]
    results = images.loadRes(str(predict / "predictions.segm.json"))
    assert len(results.anns) == report["detections"] > 0
    for ann in results.anns.values():  # every mask at its image's size, every box inside it
        img = images.imgs[ann["image_id"]]
        assert ann["segmentation"]["size"] == [img["height"], img["width"]]
        x, y, w, h = ann["bbox"]
        assert x >= 0 and y >= 0 and x + w <= img["width"] + 1e-3 and y + h <= img["height"] + 1e-3
    assert sorted(p.name for p in (predict / "overlays").iterdir()) == ["photo0.png", "photo1.png"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["stage2", "grabcut"])
def test_masks_from_boxes_gives_one_mask_per_box_inside_it(tiny_run, tmp_path, method):
    from pycocotools import mask as mask_utils

    write_new_photos(tmp_path / "photos")
    boxes = [
        (1, 1, [10.0, 8.0, 24.0, 22.0]),
        (1, 2, [18.5, 20.0, 28.0, 26.0]),
        (2, 1, [3.0, 10.0, 20.0, 18.0]),
    ]  # (image, category, x y w h)
    coco = {
        "images": [
            {"id": 1, "file_name": "photo0.png", "width": 48, "height": 64},
            {"id": 2, "file_name": "photo1.png", "width": 72, "height": 40},
        ],
        "categories": [{"id": 1, "name": "square"}, {"id": 2, "name": "other"}],
        "annotations": [
            {
                "id": k + 1,
                "image_id": i,
                "category_id": c,
                "bbox": b,
                "area": b[2] * b[3],
                "iscrowd": 0,
            }
            for k, (i, c, b) in enumerate(boxes)
        ],
    }
    (tmp_path / "boxes.json").write_text(json.dumps(coco))
    how = (
        ["--checkpoint", str(tiny_run["out"] / "segmentation/final.pth")]
        if method == "stage2"
        else ["--grabcut"]
    )
    out = tmp_path / "masks.json"
    command = [
        "masks-from-boxes",
        "--format",
        "coco",
        "--annotations",
        str(tmp_path / "boxes.json"),
    ]
    command += ["--images", str(tmp_path / "photos"), *how, "--out", str(out)]
    result = run_cli(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    masks = json.loads(out.read_text())
    sizes = {img["id"]: (img["height"], img["width"]) for img in masks["images"]}
    assert [a["bbox"] for a in masks["annotations"]] == [b for _, _, b in boxes]
    for ann in masks["annotations"]:
        assert 0 <= ann["confidence"] <= 1 and isinstance(ann["proxy_kept"], bool)
        mask = mask_utils.decode(ann["segmentation"]).astype(bool)
        assert mask.shape == sizes[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        inside = np.zeros_like(mask)
        inside[int(np.floor(y)) : int(np.ceil(y + h)), int(np.floor(x)) : int(np.ceil(x + w))] = (
            True
        )
        assert mask.any() and not (mask & ~inside).any()
    # nothing is overwritten
    again = run_cli(*command)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr


@pytest.mark.slow
def test_the_trained_detector_loads_in_plain_mmdetection(tiny_run):
    """The README's lines, in a fresh process that imports only mmdet: the config saved beside
    the checkpoint pulls in BoxCaseg's registered pieces itself (custom_imports), and the
    detector's scores on a val image are the evaluation's."""
    out = tiny_run["out"]
    gt = json.loads((out / "data/val.gt.json").read_text())
    image = gt["images"][0]
    code = (
        "import json, sys\n"
        "from mmdet.apis import inference_detector, init_detector\n"
        "model = init_detector(sys.argv[1], sys.argv[2], device='cpu')\n"
        "print(json.dumps(inference_detector(model, sys.argv[3]).pred_instances.scores.tolist()))\n"
    )
    [config] = (out / "detection/weak/work").glob("*.py")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(config),
            str(out / "detection/weak/final.pth"),
            str(Path(gt["info"]["image_root"]) / image["file_name"]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tiny_run["dir"],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scores = json.loads(result.stdout.strip().splitlines()[-1])
    evaluated = [
        r["score"]
        for r in sorted_results(out / "detection/weak/val/predictions.bbox.json")
        if r["image_id"] == image["id"]
    ]
    assert scores and scores == pytest.approx(evaluated, abs=1e-6)


@pytest.mark.slow
def test_regrading_a_run_with_nothing_changed_gives_its_own_figures(tiny_run, tmp_path):
    """benchmarks/regrade.py with the model's own test_cfg: the run's Stage 2 mIoU*, proxy
    masks and Stage 4 quality exactly (it calls the stages' own functions); a changed
    threshold gives other masks."""
    out = tiny_run["out"]

    def regrade(folder: Path, *settings: str) -> dict:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}
        command = [sys.executable, str(REPO / "benchmarks/regrade.py"), "--results", str(out)]
        command += ["--out", str(folder), "--threads", "2", "--batch-size", "8"]
        command += ["--test-cfg", *settings] if settings else []
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])

    same = regrade(tmp_path / "same")
    workflow_miou = json.loads((out / "segmentation/miou_star.json").read_text())
    assert same["salient_val_miou_star"] == round(100 * workflow_miou["model"]["miou_star"], 2)
    masks = json.loads((tmp_path / "same/proxy_masks.json").read_text())["annotations"]
    workflow = json.loads((out / "proxy/proxy_masks.json").read_text())["annotations"]
    assert [a["segmentation"] for a in masks] == [a["segmentation"] for a in workflow]
    quality = json.loads((out / "proxy/quality.json").read_text())["quality"]
    assert same["proxies_train_miou_star"] == round(100 * quality["proxy"]["miou_star"], 2)

    other = regrade(tmp_path / "other", "threshold=0.2")
    assert other["test_cfg"]["threshold"] == 0.2
    changed = json.loads((tmp_path / "other/proxy_masks.json").read_text())["annotations"]
    assert [a["segmentation"] for a in changed] != [a["segmentation"] for a in workflow]


@pytest.mark.slow
def test_second_round_trains_stage_2_again_with_round_1s_masks_as_salient_images(
    tiny_run, tmp_path
):
    """segmentation.second_round on a finished run (a copy of it): round 1's Stages 2-4 run
    beside the run's own files, their kept masks join Stage 1's salient set, and Stage 2 trains
    again on that set; Stage 1 and the baselines are not rerun."""
    import shutil

    from PIL import Image

    run = tmp_path / "run"
    shutil.copytree(tiny_run["dir"], run, symlinks=True)  # times kept: the copy is up to date
    edited = json.loads(json.dumps(TINY_RUN_CONFIG))
    edited["segmentation"]["second_round"] = {"enabled": True, "min_side": 8}
    # every non-empty round 1 mask kept: the tiny run's minutes-long model may make masks that
    # the usual threshold drops everywhere (it did on an AMD EPYC), and then the second round
    # rightly refuses to start; round 2's own drop rule is not what this test checks
    edited.setdefault("merge", {})["drop_threshold"] = 0.0
    config = tmp_path / "second_round.yaml"
    config.write_text(yaml.safe_dump(edited))
    target = "results/tiny/proxy/quality.json"
    result = run_snakemake(run, "--cores", "2", target, "--configfile", str(config))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert planned_jobs(result.stdout + result.stderr) == [
        "merge_drop",
        "merge_drop_round1",
        "proxy_masks",
        "proxy_masks_round1",
        "second_round_salient",
        "train_segmentation",
        "train_segmentation_round1",
    ]
    out = (run / "results/tiny").resolve()  # the index holds resolved paths
    stage_1 = json.loads((out / "data/salient.json").read_text())["salient"]
    extended = json.loads((out / "segmentation/round2_salient.json").read_text())["salient"]
    kept = [
        a
        for a in json.loads((out / "proxy/round1/proxy_masks.json").read_text())["annotations"]
        if a["proxy_kept"] and min(a["bbox"][2:]) >= 8
    ]
    assert extended[: len(stage_1)] == stage_1
    assert len(extended) == len(stage_1) + len(kept) > len(stage_1)
    for entry in extended[len(stage_1) :]:
        assert Path(entry["image"]).parent == out / "segmentation/round2_salient"
        assert (np.asarray(Image.open(entry["mask"])) > 0).any()
    round2_log = (out / "logs/train_segmentation.log").read_text()
    assert str(out / "segmentation/round2_salient.json") in round2_log
    # round 2's model made the final proxy masks, round 1's the ones it learned from
    round1_masks = (out / "proxy/round1/proxy_raw.json").read_text()
    assert (out / "proxy/proxy_raw.json").read_text() != round1_masks
    assert (out / "segmentation/round1/final.pth").is_file()
