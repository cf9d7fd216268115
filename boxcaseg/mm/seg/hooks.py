"""mIoU* during and after Stage 2 training (docs/method.md: predict inside the true box on a split
with true masks, IoU per instance, mean per class, then over classes).

It runs the exact Stage 3 inference code (:func:`boxcaseg.proxy_inference.iter_proxy_masks`), so the
number measured here is the quality of the proxy masks the next stage will produce.
"""

from __future__ import annotations

import os
from typing import Any

from mmengine.dist import is_main_process
from mmengine.hooks import EMAHook, Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from boxcaseg.data.coco import load_json, save_json
from boxcaseg.proxy_inference import grade_in_true_boxes


def inference_model(runner: Any) -> Any:
    """The weights Stage 3 will predict with: an :class:`EMAHook`'s running average when the
    config has one (its checkpoints carry the average as ``state_dict``), else the model in
    training."""
    for hook in runner.hooks:
        if isinstance(hook, EMAHook) and getattr(hook, "ema_model", None) is not None:
            return hook.ema_model.module
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


@HOOKS.register_module()
class MIoUStarHook(Hook):
    """Evaluate mIoU* every ``interval`` iterations (0: only at the end) and after training;
    log it (``val/miou_star``) and write the history to ``<work_dir>/<out_file>``."""

    priority = "LOW"

    def __init__(
        self,
        ann_file: str | None = None,
        interval: int = 0,
        input_size: int = 320,
        batch_size: int = 16,
        threshold: float | None = None,
        out_file: str = "miou_star.json",
    ) -> None:
        self.ann_file = ann_file
        self.interval = interval
        self.input_size = input_size
        self.batch_size = batch_size
        self.threshold = threshold
        self.out_file = out_file
        self.history: list[dict[str, Any]] = []

    def _evaluate(self, runner: Any, iteration: int) -> None:
        if not self.ann_file or not is_main_process():
            return
        gt = load_json(self.ann_file)
        model = inference_model(runner)
        was_training = model.training
        model.eval()
        try:
            # the model's own inference settings (test_cfg) unless the hook names a threshold
            report = grade_in_true_boxes(
                model,
                gt,
                input_size=self.input_size,
                batch_size=self.batch_size,
                threshold=self.threshold,
            )
        finally:
            model.train(was_training)
        entry = {"iter": iteration, **report}
        self.history.append(entry)
        runner.message_hub.update_scalar("val/miou_star", report["model"]["miou_star"])
        runner.logger.info(
            f"mIoU* at iter {iteration}: salient head {report['model']['miou_star']:.4f}, "
            f"box-as-mask baseline {report['box_as_mask']['miou_star']:.4f} "
            f"({report['model']['instances']} instances)"
        )
        save_json(
            {"ann_file": self.ann_file, "final": entry, "history": self.history},
            os.path.join(runner.work_dir, self.out_file),
            indent=1,
        )

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        if (
            self.interval
            and self.every_n_train_iters(runner, self.interval)
            and not self.is_last_train_iter(runner)
        ):
            self._evaluate(runner, runner.iter + 1)

    def after_train(self, runner: Any) -> None:
        self._evaluate(runner, runner.iter)
