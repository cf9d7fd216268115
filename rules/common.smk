# Helpers shared by the rule files, kept apart from the rules. Output paths, how a job is
# launched from its own threads and resources, input and output lists that depend on the config.
import functools
import json
import os
from pathlib import Path

RUN = config["run_name"]
OUT = f"results/{RUN}"
SOURCE = config["data"]["source"]
# demo: the embedded dataset is generated here; derive: box + salient sets derived from one dataset
GENERATED_DIR = {"demo": f"resources/{RUN}/demo", "derive": f"resources/{RUN}/derived"}.get(SOURCE)
VARIANTS = config["detection"]["variants"]
PROXY_SHARDS = int(config["proxy"].get("shards", 1))
# segmentation.second_round: Stage 2 -> 3 -> 4 run once more, round 1's kept proxy masks added
# to the salient set (rules/segmentation.smk); round 1's files go to */round1/
SECOND_ROUND = config["segmentation"]["second_round"]["enabled"]
# Stage 2 -> 3 -> 4 feed the weak detector, the longest chain of the DAG: with free job slots
# the scheduler starts them first, and the baselines (independent of Stage 2) fill the rest
CRITICAL_PATH = 10


def variant_priority(wildcards):
    """The weak variant's training and evaluation end the critical path (after Stage 2 -> 3 ->
    4); the other variants wait for a free slot. Without it a baseline that became ready at the
    same time took the slot first and the weak detector started one job later."""
    return CRITICAL_PATH if wildcards.variant == "weak" else 0


HAS_VAL = SOURCE in ("demo", "derive") or "val" in config["data"]["splits"]


def out(path):
    return f"{OUT}/{path}"


def log_file(name):
    return f"{OUT}/logs/{name}.log"


def bench_file(name):
    return f"{OUT}/benchmarks/{name}.tsv"


def section(name, exclude=()):
    """One config section as JSON: the only settings a rule sees, compared by value on rerun.
    ``exclude``: keys that do not change this rule's result (e.g. the list of variants)."""
    return json.dumps({k: v for k, v in config[name].items() if k not in exclude}, sort_keys=True)


# --- how a job is launched: from the job's own threads and resources ------------------------
# The rules state their defaults (threads; mem_mb, runtime and gpu in their resources); Snakemake
# settles a job's final values from them, a profile's default-resources / set-threads /
# set-resources, the command line's --set-threads / --set-resources and --cores (which caps
# the threads), and the SLURM executor books exactly those. The params functions below read
# the settled values from the job itself, so what a job books is what it runs with.
# `processes` (a resource of ours): training / inference processes of a job; default one per
# GPU; without a GPU, N > 1 runs N CPU processes with gloo (the multi-GPU code path on a CPU).


def cores_share(jobs):
    """Threads for a job that shares the run's cores (--cores) with jobs - 1 others, the rules'
    default (a profile or --set-threads overrides it). Stage 2 and Stage 3 take every core:
    Stage 2 is the head of the longest chain and nothing else of it can start before it, and
    it scales over threads; the detectors run two at a time on half the cores each, their steps
    scaling poorly over threads (mmcv's RoIAlign and NMS are single-threaded): docs/results.md,
    "Speed". A cluster run (its submitting process and the job inside the allocation alike:
    both must settle the same count) takes 2 unless its profile's set-threads says otherwise."""
    cores = workflow.resource_settings.cores
    if workflow.non_local_exec or workflow.remote_exec or not isinstance(cores, int):
        return 2
    return max(1, cores // jobs)


def job_processes(resources):
    gpus = int(resources.get("gpu", 0) or 0)
    return int(resources.get("processes", 0) or 0) or max(gpus, 1)


def launch(wildcards, threads, resources):
    """The command that runs a `boxcaseg` subcommand for this job: its threads shared among its
    processes (OMP_NUM_THREADS), CUDA hidden when it books no GPU, else its GPUs chosen among the
    free ones (python -m boxcaseg.gpus; SLURM's own choice is kept), several processes through
    torchrun (mmengine's `pytorch` launcher)."""
    gpus = int(resources.get("gpu", 0) or 0)
    procs = job_processes(resources)
    env = f"OMP_NUM_THREADS={max(1, threads // procs)}"
    prefix = (
        f"{env} CUDA_VISIBLE_DEVICES=" if gpus == 0 else f"{env} python -m boxcaseg.gpus {gpus}"
    )
    if procs == 1:
        return f"{prefix} python -m boxcaseg.cli"
    return (
        f"{prefix} python -m torch.distributed.run --standalone --nproc_per_node={procs} "
        "-m boxcaseg.cli"
    )


def launcher_flag(wildcards, resources):
    return "--launcher pytorch" if job_processes(resources) > 1 else ""


def training_runtime(fallback):
    """A training rule's runtime (minutes): twice its expected time on the job's threads, from
    its config's data-scaled schedule and the training file (boxcaseg/schedule.py); `fallback`
    until that file exists (Snakemake evaluates it again when the job is ready to run)."""

    def runtime(wildcards, input, threads, attempt):
        from boxcaseg.sections import detection_options, segmentation_options

        if hasattr(wildcards, "variant"):  # Stage 5
            options = detection_options(json.loads(detection_section(wildcards)))
            scale = (
                config["detection"]["boxinst_equal_ratio"]
                if wildcards.variant == "boxinst_equal"
                else 1.0
            )
        else:  # Stage 2
            options, scale = segmentation_options(config["segmentation"]), 1.0
        train = Path(input.train)
        stamp = train.stat().st_mtime_ns if train.is_file() else None
        return cached_runtime(
            input.model_config, json.dumps(options, sort_keys=True), str(train), stamp,
            threads, scale, fallback, attempt,
        )  # fmt: skip

    return runtime


@functools.lru_cache(maxsize=None)
def cached_runtime(model_config, options, train, stamp, threads, scale, fallback, attempt):
    """boxcaseg.schedule.runtime_minutes, once per job and training file version (Snakemake
    evaluates a job's resources when the DAG is built and again when the job is ready)."""
    from boxcaseg.schedule import runtime_minutes

    if stamp is None:  # the training file is not written yet
        return fallback
    from boxcaseg.engine import load_config

    return runtime_minutes(
        load_config(model_config, json.loads(options)), train, threads,
        scale=scale, fallback=fallback, attempt=attempt,
    )  # fmt: skip


def model_config_file(config_name):
    """The model config as a file path (an input: editing it reruns the stage)."""
    from boxcaseg.configs import resolve_config

    return resolve_config(config_name)


# Stage 5 variants: the masks file each Mask R-CNN trains on, and its drop threshold (the
# mask head skips instances at or below it; files without confidences keep everything).
VARIANT_FILES = {
    "weak": "proxy/proxy_masks.json",  # BoxCaseg: the learned proxy masks
    "full": "data/train.gt.json",  # true masks: the upper bound
    "box": "data/train.boxmask.json",  # the box filled as mask
    "grabcut": "proxy/grabcut_masks.json",  # GrabCut from each box, training-free
    "boxinst": "data/train.boxes.json",  # mmdet's BoxInst learns from the boxes themselves
    "boxinst_equal": "data/train.boxes.json",  # the same, at the compute of BoxCaseg's route
}
BOXINST_VARIANTS = ("boxinst", "boxinst_equal")


def detection_section(wildcards):
    """The detection section as a variant's jobs see it: without the variant list, the other
    detector's config and the equal-compute ratio (boxinst_equal gets it as --iters-scale), so
    editing BoxInst's config reruns BoxInst only (and back)."""
    other = "config" if wildcards.variant in BOXINST_VARIANTS else "boxinst_config"
    return section("detection", exclude=("variants", other, "boxinst_equal_ratio"))


def variant_model_config(wildcards):
    """BoxInst has its own detector config; every other variant is the same Mask R-CNN."""
    boxinst = wildcards.variant in BOXINST_VARIANTS
    return model_config_file(config["detection"]["boxinst_config" if boxinst else "config"])


def variant_train_file(wildcards):
    return out(VARIANT_FILES[wildcards.variant])


def variant_train_options(wildcards):
    """What only some variants train with: the weak one's drop threshold (the only variant that
    depends on merge.drop_threshold), boxinst_equal's longer schedule."""
    if wildcards.variant == "weak":
        return f"--drop-threshold {config['merge']['drop_threshold']}"
    if wildcards.variant == "grabcut":  # no drop: only empty (fully overwritten) masks
        return "--drop-threshold 0.0"
    if wildcards.variant == "boxinst_equal":
        return f"--iters-scale {config['detection']['boxinst_equal_ratio']}"
    return ""


# the second round's extra jobs: round 1's Stage 2, 3 and 4 and the extended salient set
ROUND1_COST_FILES = (
    [
        bench_file(name)
        for name in (
            "train_segmentation_round1",
            "proxy_masks_round1",
            "merge_drop_round1",
            "second_round_salient",
        )
    ]
    if SECOND_ROUND
    else []
)


def variant_cost_files(variant):
    """The benchmark files of the jobs that lead from Stage 1's files to a variant's detector:
    its training, and for the weak one Stage 2, Stage 3 and Stage 4 before it (the summary's
    compute columns)."""
    proxy = (
        [bench_file(f"proxy_masks_{i}") for i in range(PROXY_SHARDS)]
        if PROXY_SHARDS > 1
        else [bench_file("proxy_masks")]
    )
    route = {
        "weak": [bench_file("train_segmentation"), *proxy, bench_file("merge_drop")]
        + ROUND1_COST_FILES,
        "grabcut": [bench_file("grabcut_masks")],
        "box": [bench_file("box_masks")],
    }
    return route.get(variant, []) + [bench_file(f"train_detection_{variant}")]


def quality_files():
    """Train-split mask quality reports the summary shows, by name."""
    files = {"proxy": out("proxy/quality.json")}
    if "grabcut" in VARIANTS:
        files["grabcut"] = out("proxy/grabcut_quality.json")
    return files


def grabcut_inputs(wildcards):
    files = {"boxes": out("data/train.boxes.json")}
    if "full" in VARIANTS:  # the train split's true masks exist: grade the GrabCut masks
        files["gt"] = out("data/train.gt.json")
    return files


def final_targets():
    targets = [
        out("data/dataset_summary.png"),
        out("proxy/proxy_masks.json"),
        out("proxy/quality.json"),
        out("proxy/overlays.png"),
        out("segmentation/loss_curve.png"),
    ]
    if "grabcut" in VARIANTS:
        targets.append(out("proxy/grabcut_quality.json"))
    targets += expand(out("detection/{variant}/final.pth"), variant=VARIANTS)
    if HAS_VAL:
        targets += [out("summary/results.md"), out("summary/ap_table.png")]
    if PREDICT_IMAGES:
        targets.append(out("predict"))
    return targets


# predict.images: every image file of the folder is an input, so adding, removing or editing
# one reruns the prediction (a folder's own timestamp changes only with its entries)
PREDICT_VARIANT = config["predict"].get("variant", "weak")
PREDICT_IMAGES = []
if config["predict"].get("images"):
    from snakemake.exceptions import WorkflowError

    from boxcaseg.data.images import IMAGE_SUFFIXES, image_files

    _folder = Path(config["predict"]["images"])
    if not _folder.is_dir():
        raise WorkflowError(f"predict.images: {_folder} is not a folder")
    if PREDICT_VARIANT not in VARIANTS:
        raise WorkflowError(
            f"predict.variant: {PREDICT_VARIANT} is not one of detection.variants {VARIANTS}"
        )
    PREDICT_IMAGES = [str(p) for p in image_files(_folder)]
    if not PREDICT_IMAGES:
        raise WorkflowError(
            f"predict.images: no image file in {_folder} ({', '.join(IMAGE_SUFFIXES)})"
        )


def prepare_inputs(wildcards):
    from boxcaseg.data.prepare import annotation_paths

    if GENERATED_DIR:
        return [GENERATED_DIR]
    return [p for s in config["data"]["splits"].values() for p in annotation_paths(s)]


def derive_inputs(wildcards):
    from boxcaseg.data.prepare import annotation_paths

    return annotation_paths(config["data"].get("derive", {}))


def prepare_outputs():
    files = {
        "train": out("data/train.boxes.json"),
        "salient": out("data/salient.json"),
        "summary": out("data/summary.json"),
    }
    if HAS_VAL:
        files.update(val_boxes=out("data/val.boxes.json"), val_gt=out("data/val.gt.json"))
    if "full" in VARIANTS:
        files["train_gt"] = out("data/train.gt.json")
    return files


def segmentation_inputs(wildcards, first_round=False):
    """Stage 2's inputs; with a second round the last round trains on the salient set that
    round 1's proxy masks extend (``first_round``: round 1's own, Stage 1's salient set)."""
    files = {
        "train": out("data/train.boxes.json"),
        "salient": (
            out("segmentation/round2_salient.json")
            if SECOND_ROUND and not first_round
            else out("data/salient.json")
        ),
        "model_config": model_config_file(config["segmentation"]["config"]),
    }
    if HAS_VAL:
        files["val"] = out("data/val.gt.json")
    return files


def round1_segmentation_inputs(wildcards):
    return segmentation_inputs(wildcards, first_round=True)


def merge_inputs(wildcards, raw="proxy/proxy_raw.json"):
    files = {"raw": out(raw)}
    if "full" in VARIANTS:  # the train split's true masks exist: grade the proxy masks
        files["gt"] = out("data/train.gt.json")
    return files
