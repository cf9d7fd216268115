"""The SLURM path against a REAL SLURM: the tiny workflow through
`--workflow-profile profiles/slurm`, and the submitted jobs' resources checked with scontrol.

Needs a running cluster: `sudo bash scripts/local_slurm.sh start` gives a single-node one on
this machine (Debian's slurm-wlm + munge, loopback). Skipped when `sinfo` finds none.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_workflow import REPO, SNAKEMAKE, TINY_CONFIG


def cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return result.returncode == 0 and bool(re.search(r"idle|mixed|allocated", result.stdout))


needs_cluster = pytest.mark.skipif(
    not cluster_up(), reason="no SLURM cluster (scripts/local_slurm.sh start)"
)

# what each job books, set the Snakemake way on the command line (over the profile's GPU jobs:
# this cluster has no GPU)
RESOURCES = {
    "default": {"threads": 1, "mem_mb": 1500, "runtime": 20},
    "train_segmentation": {"threads": 2, "mem_mb": 3000, "runtime": 30, "gpu": 0},
    "train_detection": {"threads": 2, "mem_mb": 2500, "runtime": 25, "gpu": 0},
}
RULES = (
    "demo_dataset", "prepare_data", "train_segmentation", "proxy_masks", "merge_drop",
    "box_masks", "grabcut_masks", "train_detection", "evaluate_detection", "predict_images",
    "summary",
)  # fmt: skip
RESOURCE_ARGS = [
    "--default-resources",
    "slurm_partition=main",
    "tasks_per_gpu=0",
    "--set-threads",
    *(f"{rule}={RESOURCES.get(rule, RESOURCES['default'])['threads']}" for rule in RULES),
    "--set-resources",
    *(f"{rule}:{key}={value}" for rule in RULES
      for key, value in {"gpu": 0, **RESOURCES.get(rule, RESOURCES["default"])}.items()
      if key != "threads"),
]  # fmt: skip


@pytest.mark.slow
@needs_cluster
def test_tiny_workflow_through_the_slurm_profile(tmp_path):
    config = {
        **TINY_CONFIG,
        "run_name": "slurm",
        "segmentation": {**TINY_CONFIG["segmentation"], "max_iters": 6},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [
            *SNAKEMAKE,
            "-d",
            str(tmp_path),
            "--workflow-profile",
            str(REPO / "profiles/slurm"),
            "--slurm-no-account",
            "--jobs",
            "4",
            *RESOURCE_ARGS,
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        env=env,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert (tmp_path / "results/slurm/summary/results.json").is_file()

    # which SLURM job ran which rule, from snakemake's own log: "rule X: ... jobid: N" and
    # "Job N has been submitted with SLURM jobid M"
    rule_of_job = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", log):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        job = re.search(r"^\s+jobid: (\d+)", block, re.M)
        if rule and job:
            rule_of_job[job.group(1)] = rule.group(1)
    submitted = {}
    for job, slurm_id in re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log):
        submitted.setdefault(rule_of_job[job], []).append(slurm_id)
    assert {"train_segmentation", "proxy_masks", "train_detection", "summary"} <= set(submitted)

    def job_info(job_id: str) -> str:
        return subprocess.run(
            ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True
        ).stdout

    for rule, expected in (
        ("train_segmentation", RESOURCES["train_segmentation"]),
        ("train_detection", RESOURCES["train_detection"]),
        ("summary", RESOURCES["default"]),
    ):
        for job_id in submitted[rule]:
            info = job_info(job_id)
            assert "JobState=COMPLETED" in info, info
            assert f"MinMemoryNode={expected['mem_mb']}M" in info, info
            assert f"TimeLimit=00:{expected['runtime']:02d}:00" in info, info
            assert re.search(rf"NumCPUs={expected['threads']}\b", info), info
            assert "Partition=main" in info


# --- the local cluster script never touches a real SLURM installation ------------------------------

SCRIPT = REPO / "scripts/local_slurm.sh"


@pytest.mark.skipif(os.geteuid() != 0, reason="the script's start/stop need root")
def test_local_slurm_refuses_a_slurm_conf_it_did_not_write(tmp_path):
    conf = tmp_path / "slurm.conf"
    conf.write_text("ClusterName=the-real-cluster\n")
    result = subprocess.run(
        ["bash", str(SCRIPT), "start"],
        capture_output=True,
        text=True,
        env={**os.environ, "BOXCASEG_SLURM_CONF_DIR": str(tmp_path)},
        timeout=60,
    )
    assert result.returncode == 1
    assert "was not written by this script: refusing to touch" in result.stderr
    assert conf.read_text() == "ClusterName=the-real-cluster\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="the script's start/stop need root")
def test_local_slurm_stop_kills_only_what_start_started(tmp_path):
    """A pid file whose process is not the daemon it names (a recycled pid, or a site's own
    slurmd started otherwise) is left alone; `pkill -x slurmd` would have killed by name."""
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "slurmd.pid").write_text(str(bystander.pid))
        result = subprocess.run(
            ["bash", str(SCRIPT), "stop"],
            capture_output=True,
            text=True,
            env={**os.environ, "BOXCASEG_SLURM_PID_DIR": str(tmp_path)},
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        assert bystander.poll() is None  # still running
        assert not (tmp_path / "slurmd.pid").exists()
    finally:
        bystander.kill()
