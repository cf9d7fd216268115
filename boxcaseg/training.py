"""Running an mmengine training from one of our configs: overrides, paths, resume, launcher.

Shared by Stage 2 (mmseg) and Stage 5 (mmdet). The config file is the single source of model
and schedule defaults; ``cfg_options`` (dotted keys, as mmseg's and mmdet's ``--cfg-options``)
override them; the workflow turns its config.yaml sections into such options.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from boxcaseg.compat import patch_mmengine_checkpoint_loading

CONFIG_DIR = Path(__file__).parent / "configs"


def resolve_config(config: str) -> str:
    """A config path as given, or relative to the packaged configs (``seg/…``, ``det/…``)."""
    if Path(config).is_file():
        return str(Path(config).resolve())
    packaged = CONFIG_DIR / config
    if packaged.is_file():
        return str(packaged)
    raise FileNotFoundError(f"config {config} not found (neither a file nor one of "
                            f"{sorted(str(p.relative_to(CONFIG_DIR)) for p in CONFIG_DIR.rglob('*.py') if '_base_' not in p.parts and p.name != '__init__.py')})")


def inference_size(config: str) -> int:
    """The exact-box crop size a Stage 2 config infers at (its ``infer_size``, 320 if unset)."""
    return int(load_config(config).get("infer_size", 320))


def sync_schedule_end(cfg: Any, configured_max_iters: int | None) -> None:
    """Iteration-based schedules follow ``train_cfg.max_iters`` when it was overridden: a
    schedule that ended at the config's own max_iters ends at the new one, and its milestones
    move proportionally (a step at 2/3 of training stays at 2/3)."""
    max_iters = cfg.train_cfg.get("max_iters")
    if max_iters is None or configured_max_iters is None:
        return
    ratio = max_iters / configured_max_iters
    for sched in cfg.get("param_scheduler") or []:
        if sched.get("by_epoch", True) or sched.get("end") != configured_max_iters:
            continue
        sched["end"] = max_iters
        if "milestones" in sched:
            sched["milestones"] = [max(1, round(m * ratio)) for m in sched["milestones"]]
    if cfg.train_cfg.get("val_interval", 0) > max_iters:
        cfg.train_cfg["val_interval"] = max_iters + 1


def has_checkpoint(work_dir: str | Path) -> bool:
    return (Path(work_dir) / "last_checkpoint").is_file()


def claim_work_dir(cfg: Any, work_dir: Path) -> None:
    """Make ``work_dir`` safe to resume from: if it holds checkpoints of a DIFFERENT config
    (the user changed a setting), move it aside to ``<name>.previous-<time>`` rather than
    resuming from it or deleting it, then record this config's fingerprint."""
    fingerprint = hashlib.sha256(cfg.pretty_text.encode()).hexdigest()[:16]
    marker = work_dir / "config_fingerprint"
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 decides, the others wait for it
        for _ in range(600):
            if marker.is_file() and marker.read_text().strip() == fingerprint:
                return
            time.sleep(0.1)
        raise RuntimeError(f"rank 0 did not claim {work_dir} within a minute")
    if has_checkpoint(work_dir) and (not marker.is_file() or marker.read_text().strip() != fingerprint):
        archive = work_dir.with_name(f"{work_dir.name}.previous-{time.strftime('%Y%m%d-%H%M%S')}")
        work_dir.rename(archive)
        print(f"[boxcaseg] {work_dir} holds checkpoints of another config: moved to {archive}; "
              "training starts afresh", flush=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(fingerprint + "\n")


def load_config(config: str, cfg_options: dict[str, Any] | None = None) -> Any:
    """The config with ``cfg_options`` merged; iteration schedules follow a changed max_iters."""
    from mmengine.config import Config

    cfg = Config.fromfile(resolve_config(config))
    configured_max_iters = (cfg.get("train_cfg") or {}).get("max_iters")
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    sync_schedule_end(cfg, configured_max_iters)
    return cfg


def run_training(cfg: Any, work_dir: str | Path, *, launcher: str = "none",
                 resume: bool = True) -> Any:
    """Build an mmengine Runner and train. ``resume``: continue from the last checkpoint in
    ``work_dir`` when there is one (an interrupted job picks up where it stopped)."""
    from mmengine.runner import Runner

    patch_mmengine_checkpoint_loading()
    work_dir = Path(work_dir).resolve()
    claim_work_dir(cfg, work_dir)
    cfg.work_dir = str(work_dir)
    cfg.launcher = launcher
    cfg.resume = bool(resume and has_checkpoint(work_dir))
    cfg.load_from = None if cfg.resume else cfg.get("load_from")
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


def train_segmentation(config: str, work_dir: str | Path, *, train_ann: str,
                       salient_file: str | None, val_gt: str | None = None,
                       cfg_options: dict[str, Any] | None = None, launcher: str = "none",
                       resume: bool = True) -> Any:
    """Stage 2: train the class-agnostic model on Stage 1's box file + salient index."""
    cfg = load_config(config, cfg_options)
    dataset = cfg.train_dataloader.dataset
    dataset.ann_file = str(Path(train_ann).resolve())
    dataset.salient_file = str(Path(salient_file).resolve()) if salient_file else None
    for hook in cfg.get("custom_hooks", []):
        if hook.get("type") == "MIoUStarHook":
            hook["ann_file"] = str(Path(val_gt).resolve()) if val_gt else None
    return run_training(cfg, work_dir, launcher=launcher, resume=resume)


def dataset_fields(coco_file: str | Path) -> dict[str, Any]:
    """mmdet dataset settings read from one of our COCO files: ann_file, the image folder,
    and the classes (so they are never typed in a config)."""
    from boxcaseg.data.coco import category_names, image_root, load_json

    coco = load_json(coco_file)
    return {"ann_file": str(Path(coco_file).resolve()),
            "data_prefix": {"img": str(image_root(coco)) + "/"},
            "metainfo": {"classes": tuple(category_names(coco))}}


def _set_num_classes(model_cfg: Any, num_classes: int) -> None:
    roi = model_cfg.get("roi_head") or {}
    for head in ("bbox_head", "mask_head"):
        if head in roi:
            heads = roi[head] if isinstance(roi[head], list) else [roi[head]]
            for h in heads:
                h["num_classes"] = num_classes


def train_detection(config: str, work_dir: str | Path, *, train_ann: str,
                    drop_threshold: float | None = None, cfg_options: dict[str, Any] | None = None,
                    launcher: str = "none", resume: bool = True) -> Any:
    """Stage 5: train Mask R-CNN on a COCO file with masks (proxy, true or box masks)."""
    cfg = load_config(config, cfg_options)
    fields = dataset_fields(train_ann)
    cfg.train_dataloader.dataset.update(fields)
    _set_num_classes(cfg.model, len(fields["metainfo"]["classes"]))
    if drop_threshold is not None:
        cfg.model.roi_head.mask_head["drop_threshold"] = drop_threshold
    return run_training(cfg, work_dir, launcher=launcher, resume=resume)


def predict_detection(config: str, checkpoint: str, gt_file: str, out_dir: str | Path, *,
                      cfg_options: dict[str, Any] | None = None, launcher: str = "none") -> dict[str, str]:
    """Run a trained Mask R-CNN over ``gt_file``'s images; write COCO results files
    ``<out_dir>/predictions.{bbox,segm}.json`` and return their paths."""
    from mmengine.runner import Runner

    patch_mmengine_checkpoint_loading()
    cfg = load_config(config, cfg_options)
    fields = dataset_fields(gt_file)
    cfg.test_dataloader.dataset.update(fields)
    _set_num_classes(cfg.model, len(fields["metainfo"]["classes"]))
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "predictions"
    cfg.test_evaluator.update(ann_file=fields["ann_file"], format_only=True,
                              outfile_prefix=str(prefix))
    cfg.work_dir = str(out_dir / "test_logs")
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    cfg.launcher = launcher
    Runner.from_cfg(cfg).test()
    return {"bbox": f"{prefix}.bbox.json", "segm": f"{prefix}.segm.json"}
