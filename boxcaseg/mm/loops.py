"""Training-loop pieces shared by Stage 2 (mmseg) and Stage 5 (mmdet), registered in mmengine's
root registries so both frameworks find them.

- :class:`ResumableIterBasedTrainLoop`: mmengine's ``IterBasedTrainLoop``, except that a resumed
  run does not replay every consumed batch through the data pipeline (mmengine reads, decodes
  and augments all of them again: about an hour for the COCO schedule). It restores the
  sampler position instead: the seeded index stream is restarted and advanced by the consumed
  number of batches, indices only, then the data loader starts from there.
- :class:`BatchRecordHook`: writes which samples each rank trained on at each iteration (one
  JSON line per iteration, one file per rank): a data audit, and how the tests check that
  distributed ranks see different samples in the configured box:salient ratio.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS, LOOPS
from mmengine.runner.loops import IterBasedTrainLoop, _InfiniteDataloaderIterator


def restart_index_stream(batch_sampler: Any) -> None:
    """Put the sampler under ``batch_sampler`` back at the start of its seeded stream
    (mmengine's InfiniteSampler keeps one shared generator of indices)."""
    sampler = getattr(batch_sampler, "sampler", None)
    if sampler is not None and hasattr(sampler, "_indices_of_rank"):
        sampler.indices = sampler._indices_of_rank()
    if hasattr(batch_sampler, "restart"):  # its own random stream back to the start too
        batch_sampler.restart()


def _empty_buckets(batch_sampler: Any, *, full_only: bool) -> None:
    """Empty the aspect-ratio buckets of an mmdet batch sampler (only the full ones: the bucket
    a suspended generator has yielded but not yet cleared)."""
    buckets = getattr(batch_sampler, "_aspect_ratio_buckets", None)
    for bucket in buckets or []:
        if not full_only or len(bucket) >= batch_sampler.batch_size:
            del bucket[:]


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """IterBasedTrainLoop whose resume skips consumed batches at the batch sampler."""

    def fast_forward(self, batches: int) -> None:
        batch_sampler = self.dataloader.batch_sampler
        # mmengine built a loader iterator already, and with workers it has pulled batches
        # through a generator over this same batch sampler. mmdet's AspectRatioBatchSampler
        # keeps its buckets on the sampler, and a generator suspended at a yield has not yet
        # emptied the bucket it yielded: the next generator would append to a full bucket that
        # never equals the batch size again and spin forever. So the skip starts from empty
        # buckets, and ends with the bucket it yielded last emptied, as one uninterrupted
        # generator would have it; partly filled buckets stay for the loader.
        _empty_buckets(batch_sampler, full_only=False)
        restart_index_stream(batch_sampler)
        stream = iter(batch_sampler)
        for _ in range(batches):
            next(stream)
        _empty_buckets(batch_sampler, full_only=True)
        if hasattr(batch_sampler, "hold_iterator"):  # keep partly filled buckets for the loader
            batch_sampler.hold_iterator(stream)
        self.dataloader_iterator = _InfiniteDataloaderIterator(self.dataloader)
        print_log(
            f"[boxcaseg] resumed at iteration {batches}: the sampler skipped {batches} "
            "batches (indices only, no image loaded)",
            logger="current",
        )

    def run(self) -> Any:
        self.runner.call_hook("before_train")
        self.runner.call_hook("before_train_epoch")
        if self._iter >= self._max_iters:  # a rerun of a finished training: no batch to skip
            print_log(
                f"[boxcaseg] resumed at iteration {self._iter} of {self._max_iters}: "
                "nothing left to train",
                logger="current",
            )
        elif self._iter > 0:
            self.fast_forward(self._iter)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (
                self.runner.val_loop is not None
                and self._iter >= self.val_begin
                and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)
            ):
                self.runner.val_loop.run()
        self.runner.call_hook("after_train_epoch")
        self.runner.call_hook("after_train")
        return self.runner.model


def _sample_ids(data_batch: Any) -> list[str]:
    """A readable id per sample of an mmseg / mmdet batch: the image path, plus the box
    (Stage 2 box crops) or the sample kind."""
    ids = []
    for sample in data_batch.get("data_samples", []):
        meta = sample.metainfo
        tag = meta.get("sample_kind", "")
        if "ann_id" in meta:
            tag += f"#{meta['ann_id']}"
        ids.append(f"{meta.get('img_path', '?')}|{tag}")
    return ids


@HOOKS.register_module()
class BatchRecordHook(Hook):
    """Append ``{"iter": i, "samples": [...]}`` per training iteration to
    ``<work_dir>/<out_dir>/rank<r>.jsonl``."""

    priority = "VERY_LOW"

    def __init__(self, out_dir: str = "batches") -> None:
        self.out_dir = out_dir

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        folder = os.path.join(runner.work_dir, self.out_dir)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"rank{get_rank()}.jsonl"), "a") as fh:
            fh.write(
                json.dumps({"iter": runner.iter, "samples": _sample_ids(data_batch or {})}) + "\n"
            )
