"""The training engine: running an mmengine training from one of our configs (overrides, paths,
resume, launcher, batch, precision).

Shared by Stage 2 (:mod:`boxcaseg.segmentation`, mmseg) and Stage 5 (:mod:`boxcaseg.detection`,
mmdet). The config file is the single source of model and schedule defaults; ``cfg_options``
(dotted keys, as mmseg's and mmdet's ``--cfg-options``) override them; the workflow turns its
config.yaml sections into such options.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from boxcaseg.compat import patch_mmengine_checkpoint_loading
from boxcaseg.configs import resolve_config
from boxcaseg.data.report import DataError
from boxcaseg.schedule import follow_iterations


def use_iteration_loop(cfg: Any, max_iters: int) -> None:
    """Turn an epoch-based schedule (mmdet's ``1x``: 12 epochs, steps at 8 and 11) into an
    iteration-based one of ``max_iters``: epoch-based scheduler bounds and milestones scale by
    ``max_iters / max_epochs``, the sampler becomes infinite, checkpoints and logs count
    iterations (as many checkpoints as there were epochs)."""
    max_epochs = cfg.train_cfg.max_epochs
    per_epoch = max_iters / max_epochs
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=max_iters + 1)
    for sched in cfg.get("param_scheduler") or []:
        if not sched.get("by_epoch", True):
            continue
        sched["by_epoch"] = False
        sched["begin"] = round(sched.get("begin", 0) * per_epoch)
        if sched.get("end") is not None and sched["end"] <= max_epochs:
            sched["end"] = min(max_iters, round(sched["end"] * per_epoch))
        if "milestones" in sched:
            sched["milestones"] = [max(1, round(m * per_epoch)) for m in sched["milestones"]]
    cfg.train_dataloader.sampler = dict(type="InfiniteSampler", shuffle=True)
    checkpoint = cfg.default_hooks.get("checkpoint")
    if checkpoint is not None:
        checkpoint.update(
            by_epoch=False, interval=max(1, round(checkpoint.get("interval", 1) * per_epoch))
        )
    cfg.log_processor = dict(cfg.get("log_processor") or {}, by_epoch=False)
    if cfg.default_hooks.get("logger") is not None:
        cfg.default_hooks.logger["log_metric_by_epoch"] = False


def has_checkpoint(work_dir: str | Path) -> bool:
    return (Path(work_dir) / "last_checkpoint").is_file()


class CheckpointError(DataError):
    """No usable checkpoint where a resume needs one (the CLI prints it without a traceback)."""


def checkpoint_problem(path: Path) -> str | None:
    """Why a checkpoint file cannot be loaded (cut short by a crash, corrupt), or None.

    torch saves zip archives: every member's CRC is checked without unpickling anything (a
    truncated archive has no central directory and fails at once). A file in torch's legacy
    format is loaded instead."""
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            return None if bad is None else f"its member {bad} fails the CRC check"
        import torch

        torch.load(path, map_location="cpu", weights_only=False)
        return None
    except Exception as err:  # noqa: BLE001 - any failure to read it is the answer
        return f"{type(err).__name__}: {err}".strip()


def _checkpoint_order(path: Path) -> int:
    digits = "".join(ch for ch in path.stem.rsplit("_", 1)[-1] if ch.isdigit())
    return int(digits) if digits else -1


def resume_checkpoint(work_dir: str | Path) -> Path | None:
    """The checkpoint a rerun in ``work_dir`` resumes from, or None for a fresh start.

    mmengine's ``last_checkpoint`` file holds the absolute path it was written with; only its
    file NAME is used here, looked up inside ``work_dir``, so a results folder that was moved
    or copied resumes from its own checkpoints. A named checkpoint that is missing or cannot
    be read (a node crash while saving) falls back to the newest earlier one that can, with a
    warning naming the bad file; when none can, :class:`CheckpointError` says so (never a
    silent restart from iteration 0)."""
    work_dir = Path(work_dir)
    marker = work_dir / "last_checkpoint"
    if not marker.is_file():
        return None
    saved = sorted(
        (p for p in work_dir.glob("*.pth") if p.name.startswith(("iter_", "epoch_"))),
        key=_checkpoint_order,
        reverse=True,
    )
    pointer = marker.read_text().strip()
    named = work_dir / Path(pointer).name
    rejected = []
    if _checkpoint_order(named) < 0:
        # empty or cut short: a kill while mmengine rewrote the pointer, after the checkpoint it
        # was about to name had been saved; every checkpoint in the folder is a candidate
        rejected.append(f"{marker} names no checkpoint ({pointer!r})")
        candidates = saved
    else:
        candidates = [named] + [
            p for p in saved if p != named and _checkpoint_order(p) < _checkpoint_order(named)
        ]
    for path in candidates:
        problem = "missing" if not path.is_file() else checkpoint_problem(path)
        if problem is None:
            if rejected:
                print(
                    f"[boxcaseg] WARNING: {'; '.join(rejected)}: resuming from {path} instead",
                    flush=True,
                )
            return path
        rejected.append(f"checkpoint {path} is unusable ({problem})")
    raise CheckpointError(
        f"{work_dir}: no usable checkpoint to resume from: {'; '.join(rejected)}. Move the work "
        f"dir aside (or delete it) to train from the start"
    )


def without_locations(node: Any, digests: dict[str, str]) -> Any:
    """``node`` (a config as plain data) with every string that names an existing file
    replaced by the file's content digest (sha256, cached in ``digests``) and every string that
    names a folder by a placeholder: what a training reads, not where it lies."""
    if isinstance(node, dict):
        return {key: without_locations(value, digests) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [without_locations(value, digests) for value in node]
    if isinstance(node, str) and 0 < len(node) < 4096:
        if os.path.isfile(node):
            if node not in digests:
                with open(node, "rb") as handle:
                    digests[node] = hashlib.file_digest(handle, "sha256").hexdigest()
            return f"<file sha256 {digests[node]}>"
        if os.path.isdir(node):
            return "<folder>"
    return node


def training_fingerprint(cfg: Any) -> str:
    """What a work dir's checkpoints were trained from: the config as it runs, with the files
    it names (the training annotations, e.g. the proxy masks, the salient index, pretrained
    weights) by their content and not by their paths. A rerun on changed data (Snakemake
    reran the job because Stage 4 wrote new proxy masks under the same name) must not resume
    the old data's training, and a results folder copied elsewhere, its data with it, still
    resumes. The images themselves are not read (an image replaced under the same name is not
    seen)."""
    plain = without_locations(cfg.to_dict(), {})
    text = json.dumps(plain, sort_keys=True, default=_stable_name)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stable_name(value: Any) -> str:
    """A config value JSON cannot hold (a class, a function), by its name: the same in every
    process, unlike its repr's memory address."""
    named = value if hasattr(value, "__qualname__") else type(value)
    return f"{getattr(named, '__module__', '')}.{named.__qualname__}"


def claim_work_dir(cfg: Any, work_dir: Path) -> None:
    """Make ``work_dir`` safe to resume from: if it holds checkpoints of a DIFFERENT training
    (the user changed a setting, or the data it trains on changed: :func:`training_fingerprint`),
    move it aside to ``<name>.previous-<time>`` rather than resuming from it or deleting it, then
    record this training's fingerprint."""
    fingerprint = training_fingerprint(cfg)
    marker = work_dir / "config_fingerprint"
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 decides, the others wait for it
        for _ in range(600):
            if marker.is_file() and marker.read_text().strip() == fingerprint:
                return
            time.sleep(0.1)
        raise RuntimeError(f"rank 0 did not claim {work_dir} within a minute")
    if has_checkpoint(work_dir) and (
        not marker.is_file() or marker.read_text().strip() != fingerprint
    ):
        archive = work_dir.with_name(f"{work_dir.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
        work_dir.rename(archive)
        print(
            f"[boxcaseg] {work_dir} holds checkpoints of another config or other training "
            f"data: moved to {archive}; training starts afresh",
            flush=True,
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint + "\n")


def load_config(config: str, cfg_options: dict[str, Any] | None = None) -> Any:
    """The config with ``cfg_options`` merged; iteration schedules follow a changed max_iters
    (which also replaces a data-scaled ``schedule``: :mod:`boxcaseg.schedule`)."""
    from mmengine.config import Config

    cfg = Config.fromfile(resolve_config(config))
    cfg_options = dict(cfg_options or {})
    train_cfg = cfg.get("train_cfg") or {}
    if "train_cfg.max_iters" in cfg_options and "max_epochs" in train_cfg:
        # an iteration budget for an epoch-based config (e.g. det/maskrcnn_r101_fpn_1x_coco.py)
        use_iteration_loop(cfg, int(cfg_options.pop("train_cfg.max_iters")))
        train_cfg = cfg.train_cfg
    configured_max_iters = train_cfg.get("max_iters")
    if "train_cfg.max_iters" in cfg_options and cfg.get("schedule"):
        # an explicit iteration count: no data-scaled schedule (its time per iteration stays)
        cfg.schedule = {k: v for k, v in cfg.schedule.items() if k == "cpu_seconds_per_iter"}
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    follow_iterations(cfg, configured_max_iters)
    return cfg


def log_schedule(line: str | None) -> None:
    """The schedule line (boxcaseg.schedule), printed once (rank 0) before training starts."""
    if line and os.environ.get("RANK", "0") == "0":
        print(line, flush=True)


def launch_world_size(launcher: str) -> int:
    """How many training processes the launch has, read before mmengine initialises them:
    torchrun's ``WORLD_SIZE``, SLURM's ``SLURM_NTASKS``, else 1."""
    if launcher == "pytorch":
        return int(os.environ.get("WORLD_SIZE", 1))
    if launcher == "slurm":
        return int(os.environ.get("SLURM_NTASKS", 1))
    return 1


def apply_global_batch(cfg: Any, world_size: int) -> str | None:
    """Per-process batch from the config's GLOBAL one (``global_batch_size``; the lr in the
    config is the lr for that batch): ``global / world_size`` per process. When the global
    batch does not divide, each process takes the next larger batch and the lr follows the
    real global batch linearly (mmengine's ``auto_scale_lr``). A box:salient split
    (``batch_sampler.box_per_batch``) is global too: the sampler gives each rank its share.
    Returns the line to log; None for a config without ``global_batch_size`` (its
    ``train_dataloader.batch_size`` is per process, the OpenMMLab convention)."""
    global_batch = cfg.get("global_batch_size")
    if not global_batch:
        return None
    per_process = -(-int(global_batch) // world_size)
    cfg.train_dataloader.batch_size = per_process
    cfg.auto_scale_lr = dict(enable=True, base_batch_size=int(global_batch))
    real = per_process * world_size
    lr = cfg.optim_wrapper.optimizer.get("lr")
    line = (
        f"[boxcaseg] batch: global {global_batch} over {world_size} process(es) = "
        f"{per_process} per process"
    )
    if real != global_batch:
        line += (
            f"; {global_batch} does not divide, so the real global batch is {real} and the "
            f"lr follows it linearly: {lr} x {real}/{global_batch} = {lr * real / global_batch:g}"
        )
    else:
        line += f"; lr {lr} (stated for global batch {global_batch}, unchanged)"
    sampler = cfg.train_dataloader.get("batch_sampler") or {}
    box = sampler.get("box_per_batch")
    if box is not None:
        shares = [box // world_size + (1 if r < box % world_size else 0) for r in range(world_size)]
        line += f"; box samples per global batch {box} (per process {shares}), salient {real - box}"
    return line


def sync_bn_to_bn(node: Any) -> Any:
    """Every ``SyncBN`` norm config under ``node`` turned into ``BN`` (for processes that
    cannot synchronise BN: torch's SyncBatchNorm runs on GPUs only)."""
    if isinstance(node, dict):
        return type(node)(
            {
                k: ("BN" if k == "type" and v == "SyncBN" else sync_bn_to_bn(v))
                for k, v in node.items()
            }
        )
    if isinstance(node, (list, tuple)):
        return type(node)(sync_bn_to_bn(v) for v in node)
    return node


def setup_distributed(cfg: Any, launcher: str) -> str | None:
    """Multi-process training without a GPU: the same mmengine launcher, DDP and hooks as a
    GPU job, on CPU processes. mmengine's own ``init_dist`` pins a CUDA device, so here the
    process group is opened with gloo first (mmengine then finds it initialised), DDP wraps
    the model without device ids, and SyncBN becomes BN. With a GPU nothing changes: mmengine
    opens NCCL as usual. Returns the line to log."""
    import torch

    if launcher == "none" or torch.cuda.is_available():
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    cfg.env_cfg = dict(cfg.get("env_cfg") or {})
    cfg.env_cfg["dist_cfg"] = dict(cfg.env_cfg.get("dist_cfg") or {}, backend="gloo")
    cfg.model_wrapper_cfg = dict(
        type="MMDistributedDataParallel",
        device_ids=None,
        broadcast_buffers=False,
        find_unused_parameters=cfg.get("find_unused_parameters", False),
    )
    cfg.model = sync_bn_to_bn(cfg.model)
    return (
        f"[boxcaseg] {dist.get_world_size()} CPU processes (no GPU): gloo process group, DDP "
        "without device ids, SyncBN reverted to BN"
    )


def apply_precision(cfg: Any, amp: bool | str | None) -> str | None:
    """``amp``: True / 'float16' / 'bfloat16' trains with mmengine's AmpOptimWrapper (mixed
    precision, loss scaling for float16) on a GPU. Without a GPU (where AmpOptimWrapper cannot
    run) the training stays in float32 and says so."""
    import torch

    if not amp:
        return None
    dtype = "float16" if amp is True else str(amp)
    if not torch.cuda.is_available():
        return f"[boxcaseg] AMP ({dtype}) asked for, but there is no GPU: training in float32"
    wrapper = dict(cfg.optim_wrapper)
    wrapper.update(type="AmpOptimWrapper", dtype=dtype)
    if dtype == "float16":
        wrapper.setdefault("loss_scale", "dynamic")
    cfg.optim_wrapper = wrapper
    return f"[boxcaseg] mixed precision: AmpOptimWrapper, {dtype}"


def backbone_from_scratch(model_cfg: Any) -> bool:
    init = model_cfg.get("backbone", {}).get("init_cfg") or {}
    inits = init if isinstance(init, list) else [init]
    return not any(i.get("type") in ("Pretrained", "CheckedPretrained") for i in inits)


def config_changes(cfg: Any) -> str:
    """A unified diff from the config file as written (``cfg.filename``) to ``cfg`` as it will
    run: every cfg_option, data path and start-up change (loop type, per-process batch,
    distributed settings, precision, resume) in one place."""
    import difflib

    from mmengine.config import Config

    written = Config.fromfile(cfg.filename).pretty_text.splitlines()
    running = cfg.pretty_text.splitlines()
    return (
        "\n".join(difflib.unified_diff(written, running, "as written", "as run", n=1, lineterm=""))
        + "\n"
    )


def run_training(
    cfg: Any,
    work_dir: str | Path,
    *,
    launcher: str = "none",
    resume: bool = True,
    amp: bool | str | None = None,
) -> Any:
    """Build an mmengine Runner and train. ``resume``: continue from the last checkpoint in
    ``work_dir`` when there is one (an interrupted job picks up where it stopped; the sampler
    skips what was trained, no batch is loaded twice). ``launcher`` 'pytorch' under torchrun:
    one process per GPU, or CPU processes with gloo where there is no GPU."""
    from mmengine.runner import Runner

    import boxcaseg.mm  # noqa: F401  (the resumable loop, the checked pretrained loader)
    from boxcaseg.mm.memory_format import apply_memory_format

    patch_mmengine_checkpoint_loading()
    work_dir = Path(work_dir).resolve()
    claim_work_dir(cfg, work_dir)  # before the per-process batch: resuming on more GPUs is fine
    if cfg.train_cfg.get("type") == "IterBasedTrainLoop":
        cfg.train_cfg["type"] = "ResumableIterBasedTrainLoop"
    lines = [
        setup_distributed(cfg, launcher),
        apply_global_batch(cfg, launch_world_size(launcher)),
        apply_precision(cfg, amp),
    ]
    for line in lines:
        if line and os.environ.get("RANK", "0") == "0":
            print(line, flush=True)
    cfg.work_dir = str(work_dir)
    cfg.launcher = launcher
    # resolved here, inside work_dir (mmengine would follow last_checkpoint's absolute path)
    resume_from = resume_checkpoint(work_dir) if resume else None
    cfg.resume = resume_from is not None
    cfg.load_from = str(resume_from) if resume_from is not None else cfg.get("load_from")
    if os.environ.get("RANK", "0") == "0":
        changes = config_changes(cfg)
        (work_dir / "config_changes.diff").write_text(changes)
        print(
            f"[boxcaseg] what this run changes in {cfg.filename} (config.yaml's section, the "
            "data files, start-up settings; also in config_changes.diff):\n" + changes,
            flush=True,
        )
    runner = Runner.from_cfg(cfg)
    layout = apply_memory_format(runner.model, cfg)  # before train(): EMA copies it as it is
    if layout and os.environ.get("RANK", "0") == "0":
        print(layout, flush=True)
    try:
        runner.train()
    finally:
        release_visualizer(runner)
    return runner


def release_visualizer(runner: Any) -> None:
    """Forget the run's visualizer when the run ends. mmengine keeps it as a process-wide named
    instance (mmdet's configs name it 'visualizer'), so the next Runner in the same process (a
    prediction after a training, the tests, the benchmarks) would get it back still writing into
    the first run's work dir, which may be gone by then."""
    visualizer = getattr(runner, "visualizer", None)
    if visualizer is not None:
        type(visualizer)._instance_dict.pop(visualizer.instance_name, None)
