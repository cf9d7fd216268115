"""Command lines the tests share: one place that knows `boxcaseg train-seg`'s arguments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEMO_SEG_CONFIG = "seg/boxcaseg_hr18s_demo.py"


def train_seg_args(
    tiny_data: dict[str, Path],
    work: Path,
    section: dict[str, Any] | str,
    *,
    config: str = DEMO_SEG_CONFIG,
    checkpoint: Path | None = None,
    metrics: Path | None = None,
    val: bool = True,
) -> list[str]:
    """`train-seg` and its arguments (no program) on the ``tiny_data`` fixture's Stage 1 files:
    ``section`` as a dict or its JSON; val, checkpoint and metrics only where asked for."""
    args = ["train-seg", "--config", config, "--train", str(tiny_data["train_boxes"])]
    args += ["--salient", str(tiny_data["salient"])]
    if val:
        args += ["--val", str(tiny_data["val_gt"])]
    args += ["--work-dir", str(work)]
    if checkpoint is not None:
        args += ["--checkpoint-out", str(checkpoint)]
    if metrics is not None:
        args += ["--metrics-out", str(metrics)]
    text = section if isinstance(section, str) else json.dumps(section)
    return [*args, "--section", text]
