"""Stage 2, the class-agnostic segmentation model's training (docs/method.md, Stage 2): Stage 1's
box file and salient index into an mmseg training run of the training engine
(:mod:`boxcaseg.engine`). The model, its heads and losses are in :mod:`boxcaseg.mm.seg`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from boxcaseg.engine import load_config, log_schedule, run_training
from boxcaseg.schedule import apply_plan


def train_segmentation(
    config: str,
    work_dir: str | Path,
    *,
    train_ann: str,
    salient_file: str | None,
    val_gt: str | None = None,
    cfg_options: dict[str, Any] | None = None,
    launcher: str = "none",
    resume: bool = True,
    amp: bool | str | None = None,
) -> Any:
    """Stage 2: train the class-agnostic model on Stage 1's box file + salient index."""
    cfg = load_config(config, cfg_options)
    dataset = cfg.train_dataloader.dataset
    dataset.ann_file = str(Path(train_ann).resolve())
    dataset.salient_file = str(Path(salient_file).resolve()) if salient_file else None
    for hook in cfg.get("custom_hooks", []):
        if hook.get("type") == "MIoUStarHook":
            hook["ann_file"] = str(Path(val_gt).resolve()) if val_gt else None
    log_schedule(apply_plan(cfg, train_ann, threads=torch.get_num_threads()))
    return run_training(cfg, work_dir, launcher=launcher, resume=resume, amp=amp)
