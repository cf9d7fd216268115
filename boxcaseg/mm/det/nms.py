"""Greedy NMS for the CPU recipes: mmcv's ``nms`` results, index for index, in vector code that
stops once it holds ``max_num`` boxes.

The RPN of a Mask R-CNN training step keeps its ``max_per_img`` best proposals after NMS over
up to ``nms_pre`` boxes a level; mmcv's CPU kernel is a scalar loop over every pair of the
sorted boxes and finds all survivors, though only the first ``max_per_img`` are used. On a
2-core CPU it took a tenth of a demo Mask R-CNN step (docs/results.md, "Speed").

``block_nms`` sorts the scores with the same call mmcv's kernel makes, then walks the sorted
boxes in blocks: a block's boxes overlapping a box kept before it are suppressed (one
vectorised IoU of the kept boxes against the block), then mmcv's loop runs over the block's
IoU tile packed into bit sets (one Python step a box). The IoU is mmcv's float arithmetic op
for op and symmetric bit for bit, so every suppression decision, and the kept indices in
their order, are mmcv's (tests/test_nms.py). With ``max_num`` it stops after the block that
completes ``max_num`` kept boxes: mmcv returns the same first ``max_num``. Without it, it
finds every survivor and is no faster than mmcv's kernel.

mmcv's ``batched_nms`` (which mmdet's heads call) evaluates the ``type`` of its ``nms_cfg`` in
the namespace of ``mmcv.ops.nms`` and passes the other keys on; importing
:mod:`boxcaseg.mm.det` adds ``block_nms`` there, so a config states
``nms=dict(type='block_nms', iou_threshold=0.7, max_num=300)``. On a GPU it calls mmcv's
kernel.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

# sorted boxes settled a pass: the IoU tiles are (kept x BLOCK) and (BLOCK x BLOCK)
BLOCK = 256


def _overlaps(
    x1: Tensor,
    y1: Tensor,
    x2: Tensor,
    y2: Tensor,
    area: Tensor,
    rows: slice | Tensor,
    cols: slice,
    offset: int,
) -> Tensor:
    """mmcv's ``ovr`` of every (row, col) box pair, op for op: (R, C)."""
    xx1 = torch.maximum(x1[rows, None], x1[None, cols])
    yy1 = torch.maximum(y1[rows, None], y1[None, cols])
    xx2 = torch.minimum(x2[rows, None], x2[None, cols])
    yy2 = torch.minimum(y2[rows, None], y2[None, cols])
    w = (xx2 - xx1 + offset).clamp(min=0.0)
    h = (yy2 - yy1 + offset).clamp(min=0.0)
    inter = w * h
    return inter / (area[rows, None] + area[None, cols] - inter)


def _greedy_in_block(suppresses: Tensor, candidate: Tensor) -> Tensor:
    """mmcv's loop over one block, in Python integers as bit sets: box i (in score order) is
    kept unless a kept box before it suppresses it; a kept box removes its row's boxes. One
    step a box, however long the chains of suppressions are."""
    packed = np.packbits(suppresses.numpy(), axis=1, bitorder="little")
    removed = int.from_bytes(np.packbits(~candidate.numpy(), bitorder="little").tobytes(), "little")
    keep = []
    for i in range(candidate.numel()):
        if not (removed >> i) & 1:
            keep.append(i)
            removed |= int.from_bytes(packed[i].tobytes(), "little")
    return torch.tensor(keep, dtype=torch.long)


def greedy_keep(
    boxes: Tensor, order: Tensor, iou_threshold: float, offset: int = 0, max_num: int = -1
) -> Tensor:
    """Positions (into ``order``) greedy NMS keeps, ascending; all of them, or at least the
    first ``max_num`` when it is > 0 (the walk stops after the block that reaches it)."""
    x1, y1, x2, y2 = (boxes[order, k].contiguous() for k in range(4))
    area = (x2 - x1 + offset) * (y2 - y1 + offset)
    threshold = torch.tensor(iou_threshold, dtype=torch.float32)  # C++ `float iou_threshold`
    n = order.numel()
    kept = torch.empty(0, dtype=torch.long)
    for start in range(0, n, BLOCK):
        block = slice(start, min(start + BLOCK, n))
        size = block.stop - start
        candidate = torch.ones(size, dtype=torch.bool)
        if kept.numel():
            candidate &= ~(_overlaps(x1, y1, x2, y2, area, kept, block, offset) > threshold).any(0)
        # pairs (i, j) of this block, i before j, whose overlap suppresses j if i is kept
        suppresses = (_overlaps(x1, y1, x2, y2, area, block, block, offset) > threshold).triu_(1)
        keep = _greedy_in_block(suppresses, candidate)
        kept = torch.cat([kept, keep + start])
        if 0 < max_num <= kept.numel():
            break
    return kept


def block_nms(
    boxes: Tensor,
    scores: Tensor,
    iou_threshold: float,
    offset: int = 0,
    score_threshold: float = 0,
    max_num: int = -1,
) -> tuple[Tensor, Tensor]:
    """``mmcv.ops.nms``'s interface and results (kept ``dets`` as (x1, y1, x2, y2, score) and
    their indices into ``boxes``, by descending score), its CPU kernel's loop vectorised."""
    from mmcv.ops import nms

    if not isinstance(boxes, Tensor) or boxes.is_cuda:  # numpy input, mmcv's CUDA kernel
        return nms(boxes, scores, iou_threshold, offset, score_threshold, max_num)
    assert offset in (0, 1)
    valid = None
    if score_threshold > 0:
        valid = (scores > score_threshold).nonzero().view(-1)
        boxes, scores = boxes[valid], scores[valid]
    if boxes.numel() == 0:
        inds = torch.empty(0, dtype=torch.long)
    else:  # a named event in torch's profiler, as mmcv's NMSop is
        with torch.profiler.record_function("block_nms"):
            order = scores.sort(0, True)[1]  # the call mmcv's kernel makes: the same order
            inds = order[greedy_keep(boxes, order, float(iou_threshold), offset, max_num)]
    if max_num > 0:
        inds = inds[:max_num]
    dets = torch.cat((boxes[inds], scores[inds].reshape(-1, 1)), dim=1)
    return dets, inds if valid is None else valid[inds]


def check_early_stops(model_cfg: Any, config: str = "the config") -> int:
    """Refuse a detector config whose ``block_nms`` would stop before its head keeps
    ``max_per_img`` boxes (e.g. max_per_img raised by cfg_options, max_num left at 300): it
    would silently train on fewer proposals. Returns how many NMS settings it checked."""
    checked = 0
    for stage in ("train_cfg", "test_cfg"):
        for part_name, part in (model_cfg.get(stage) or {}).items():
            nms_cfg = part.get("nms") if isinstance(part, dict) else None
            if not nms_cfg or nms_cfg.get("type") != "block_nms":
                continue
            max_num, keeps = nms_cfg.get("max_num", -1), part.get("max_per_img", -1)
            if 0 < max_num and (keeps <= 0 or max_num < keeps):
                raise ValueError(
                    f"{config}: model.{stage}.{part_name}.nms stops after max_num={max_num} "
                    f"boxes but max_per_img is {keeps}: block_nms would return fewer boxes than "
                    "mmcv's nms; set nms.max_num to max_per_img (or -1: no early stop)"
                )
            checked += 1
    return checked


def register_in_mmcv_nms() -> None:
    """``batched_nms`` looks its ``nms_cfg`` type up in the namespace of ``mmcv.ops.nms``."""
    import importlib

    # the module, not the `nms` function that mmcv.ops re-exports under the same name
    module = importlib.import_module("mmcv.ops.nms")

    if getattr(module, "block_nms", block_nms) is not block_nms:
        raise RuntimeError("mmcv.ops.nms.block_nms exists already and is not boxcaseg's")
    module.block_nms = block_nms
