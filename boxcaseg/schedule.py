"""How long a training runs: the schedule grows with the data, and its expected time is known
before it starts (printed in the log, and the Snakemake job's ``runtime``).

A model config may state ``schedule = dict(passes=P, per='boxes' | 'images', min_iters=A,
max_iters=B, cpu_seconds_per_iter=S)``: the training runs P passes over the training boxes
(Stage 2: each iteration sees ``box_per_batch`` of them) or images (the detectors: each
iteration sees the global batch), at least A and at most B iterations; its lr schedule follows
(milestones at the same fraction). ``cpu_seconds_per_iter`` is one iteration's time on one CPU
thread of the machine the recipe was measured on (benchmarks/run.py --only stage_speed); the
expected time divides it by ``threads ** 0.5`` (the 2-thread speed-ups measured were 1.1-1.65x).
An explicit iteration count (config.yaml's ``max_iters``, a ``train_cfg.max_iters`` option)
turns the data-scaled schedule off (``engine.load_config`` keeps only ``cpu_seconds_per_iter``).
A config without ``schedule`` keeps its fixed iterations. Whatever sets the count, the lr
milestones and BoxInst's pairwise ramp follow it (:func:`follow_iterations`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

THREAD_SPEEDUP_EXPONENT = 0.5


@dataclass(frozen=True)
class Plan:
    iterations: int
    items: int  # training boxes or images
    per: str  # 'boxes' or 'images'
    per_iteration: int  # of them seen by one iteration
    expected_seconds: float | None  # None: the config states no per-iteration time

    def describe(self, spec: dict[str, Any], threads: int) -> str:
        passes = self.iterations * self.per_iteration / max(self.items, 1)
        line = (
            f"[boxcaseg] schedule: {self.items} training {self.per}, {self.per_iteration} an "
            f"iteration, {spec['passes']:g} passes -> {self.iterations} iterations "
            f"(bounds {spec.get('min_iters', 1)}-{spec.get('max_iters') or 'none'}; "
            f"{passes:.1f} passes)"
        )
        if self.expected_seconds is not None:
            line += (
                f"; expected {self.expected_seconds / 60:.1f} min on {threads} CPU thread(s) "
                f"(config's cpu_seconds_per_iter {spec['cpu_seconds_per_iter']:g})"
            )
        return line


def follow_iterations(cfg: Any, configured_max_iters: int | None) -> None:
    """Make an iteration-based schedule follow ``train_cfg.max_iters`` after it changed from
    ``configured_max_iters``: a scheduler that ended at the old count ends at the new one, its
    milestones at the same fraction (a step at 3/4 of training stays at 3/4), and BoxInst's
    pairwise ramp-up (``model.mask_head.warmup_iters``; mmdet: 10k of 90k) too. The lr warm-up
    at the start keeps its length."""
    max_iters = cfg.train_cfg.get("max_iters")
    if max_iters is None or configured_max_iters is None or max_iters == configured_max_iters:
        return
    ratio = max_iters / configured_max_iters
    for sched in cfg.get("param_scheduler") or []:
        if sched.get("by_epoch", True) or sched.get("end") != configured_max_iters:
            continue
        sched["end"] = max_iters
        if "milestones" in sched:
            sched["milestones"] = [max(1, round(m * ratio)) for m in sched["milestones"]]
    mask_head = (cfg.get("model") or {}).get("mask_head") or {}
    if "warmup_iters" in mask_head:
        mask_head["warmup_iters"] = max(1, round(mask_head["warmup_iters"] * ratio))
    if cfg.train_cfg.get("val_interval", 0) > max_iters:
        cfg.train_cfg["val_interval"] = max_iters + 1


def set_iterations(cfg: Any, iterations: int) -> int:
    """Train ``iterations`` iterations, the schedule following (:func:`follow_iterations`);
    returns the count it replaced."""
    configured = cfg.train_cfg.max_iters
    cfg.train_cfg.max_iters = int(iterations)
    follow_iterations(cfg, configured)
    return configured


def scaled_iterations(
    items: int, per_iteration: int, passes: float, min_iters: int = 1, max_iters: int | None = None
) -> int:
    """Iterations for ``passes`` passes over ``items`` seen ``per_iteration`` at a time, within
    [min_iters, max_iters]."""
    iterations = max(int(min_iters), math.ceil(passes * items / max(per_iteration, 1)))
    return min(iterations, int(max_iters)) if max_iters else iterations


def expected_seconds(iterations: int, spec: dict[str, Any], threads: int) -> float | None:
    per_iter = spec.get("cpu_seconds_per_iter")
    if not per_iter:
        return None
    return iterations * float(per_iter) / max(threads, 1) ** THREAD_SPEEDUP_EXPONENT


def count_items(train_file: str | Path, per: str) -> int:
    """Non-crowd boxes, or images with at least one of them (what the detectors train on:
    mmdet's filter_empty_gt skips the others), of a COCO training file."""
    from boxcaseg.data.coco import annotations_by_image, load_json

    by_image = annotations_by_image(load_json(train_file)["annotations"], skip_crowd=True)
    if per == "boxes":
        return sum(len(anns) for anns in by_image.values())
    if per == "images":
        return sum(1 for anns in by_image.values() if anns)
    raise ValueError(f"schedule.per {per!r}: 'boxes' or 'images'")


def per_iteration(cfg: Any, per: str) -> int:
    """Boxes (Stage 2's global box:salient split) or images (the global batch) one iteration
    trains on, all processes together."""
    batch = int(cfg.get("global_batch_size") or cfg.train_dataloader.batch_size)
    if per == "boxes":  # uniform mixing (no split): at most the whole batch
        return int((cfg.train_dataloader.get("batch_sampler") or {}).get("box_per_batch") or batch)
    return batch


def plan(cfg: Any, train_file: str | Path, threads: int = 1) -> Plan | None:
    """The data-scaled schedule of ``cfg`` for ``train_file``, or None when the config states
    none (or an explicit iteration count replaced it: ``schedule`` set to None)."""
    spec = cfg.get("schedule")
    if not spec or not spec.get("passes"):
        return None
    per = spec.get("per", "boxes")
    items = count_items(train_file, per)
    step = per_iteration(cfg, per)
    iterations = scaled_iterations(
        items, step, spec["passes"], spec.get("min_iters", 1), spec.get("max_iters")
    )
    return Plan(iterations, items, per, step, expected_seconds(iterations, spec, threads))


def apply_plan(cfg: Any, train_file: str | Path, threads: int = 1) -> str | None:
    """Set ``cfg``'s iterations (and its lr schedule's milestones) from the data; returns the
    line to log, None when the config keeps its fixed iterations."""
    result = plan(cfg, train_file, threads)
    if result is None:
        return None
    set_iterations(cfg, result.iterations)
    return result.describe(cfg.schedule, threads)


def runtime_minutes(
    cfg: Any,
    train_file: str | Path,
    threads: int,
    *,
    scale: float = 1.0,
    fallback: int,
    attempt: int = 1,
) -> int:
    """A Snakemake ``runtime`` (minutes) for a training job of ``cfg`` (loaded with the job's
    options) on the CPU: twice the expected time (times the attempt) plus 10 minutes, or
    ``fallback`` when it cannot be known yet (the training file is not written yet, a config
    that states no per-iteration time). A GPU job takes less; a profile's runtime for it
    replaces this one."""
    if not Path(train_file).is_file():
        return fallback
    result = plan(cfg, train_file, threads)
    if result is None:  # fixed iterations (an explicit count): their time, if the config says
        spec = cfg.get("schedule") or {}
        seconds = expected_seconds(cfg.train_cfg.get("max_iters") or 0, spec, threads)
    else:
        seconds = result.expected_seconds
    if seconds is None:
        return fallback
    return int(math.ceil(2 * attempt * seconds * scale / 60)) + 10
