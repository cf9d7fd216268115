"""Stage 5, Mask R-CNN on the proxy masks and its evaluation (docs/method.md, Stage 5): the
detection training (an mmdet run of the training engine, :mod:`boxcaseg.engine`), prediction
over a split, and the mask head graded inside the true boxes. The detector's dataset, mask head
and transforms are in :mod:`boxcaseg.mm.det`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from boxcaseg.compat import patch_mmengine_checkpoint_loading
from boxcaseg.engine import (
    backbone_from_scratch,
    load_config,
    log_schedule,
    release_visualizer,
    run_training,
    setup_distributed,
)
from boxcaseg.schedule import apply_plan, set_iterations


def dataset_fields(coco_file: str | Path) -> dict[str, Any]:
    """mmdet dataset settings read from one of our COCO files: ann_file, the image folder,
    and the classes (so they are never typed in a config)."""
    from boxcaseg.data.coco import category_names, image_root, load_json

    coco = load_json(coco_file)
    return {
        "ann_file": str(Path(coco_file).resolve()),
        "data_prefix": {"img": str(image_root(coco)) + "/"},
        "metainfo": {"classes": tuple(category_names(coco))},
    }


def load_detector_config(config: str, cfg_options: dict[str, Any] | None = None) -> Any:
    """A Stage 5 config with its options applied, refused by name where its block_nms would
    stop before the head keeps max_per_img boxes (boxcaseg/mm/det/nms.py)."""
    from boxcaseg.mm.det.nms import check_early_stops

    cfg = load_config(config, cfg_options)
    check_early_stops(cfg.model, config)
    return cfg


def _set_num_classes(model_cfg: Any, num_classes: int) -> None:
    """num_classes of every head that has one: Mask R-CNN's RoI heads, a one-stage detector's
    (BoxInst's) bbox head."""
    roi = model_cfg.get("roi_head") or {}
    heads = [model_cfg.get("bbox_head")] + [roi.get(name) for name in ("bbox_head", "mask_head")]
    for head in heads:
        for h in head if isinstance(head, list) else [head]:
            if h is not None and "num_classes" in h:
                h["num_classes"] = num_classes


def stretch_schedule(cfg: Any, scale: float) -> str:
    """An iteration-based schedule made ``scale`` times as long (the boxinst_equal variant):
    max_iters, the lr milestones and BoxInst's pairwise ramp at the same fraction of training
    (:func:`boxcaseg.schedule.set_iterations`). Returns the line to log."""
    configured = set_iterations(cfg, max(1, round(cfg.train_cfg.max_iters * scale)))
    return (
        f"[boxcaseg] schedule x{scale:g}: {configured} -> {cfg.train_cfg.max_iters} iterations, "
        "lr milestones and the pairwise warm-up stretched alike"
    )


def train_detection(
    config: str,
    work_dir: str | Path,
    *,
    train_ann: str,
    drop_threshold: float | None = None,
    iters_scale: float = 1.0,
    cfg_options: dict[str, Any] | None = None,
    launcher: str = "none",
    resume: bool = True,
    amp: bool | str | None = None,
) -> Any:
    """Stage 5: train Mask R-CNN on a COCO file with masks (proxy, true or box masks), or
    BoxInst on the boxes. ``iters_scale``: train that many times the schedule's iterations
    (:func:`stretch_schedule`; the boxinst_equal variant)."""
    cfg = load_detector_config(config, cfg_options)
    log_schedule(apply_plan(cfg, train_ann, threads=torch.get_num_threads()))
    if iters_scale != 1.0:
        log_schedule(stretch_schedule(cfg, iters_scale))
    fields = dataset_fields(train_ann)
    cfg.train_dataloader.dataset.update(fields)
    _set_num_classes(cfg.model, len(fields["metainfo"]["classes"]))
    backbone = cfg.model.backbone
    if backbone_from_scratch(cfg.model) and (
        backbone.get("frozen_stages", -1) >= 0 or backbone.get("norm_eval", False)
    ):
        # mmdet's configs freeze the stem + layer1 and fix BN statistics: right for an
        # ImageNet-initialised backbone, fatal for a random one
        backbone.update(frozen_stages=-1, norm_eval=False)
        if os.environ.get("RANK", "0") == "0":
            print(
                "[boxcaseg] detection backbone from scratch (no detection.pretrained): "
                "frozen_stages=-1 and norm_eval=False (all stages and BN statistics train)",
                flush=True,
            )
    if drop_threshold is not None:
        cfg.model.roi_head.mask_head["drop_threshold"] = drop_threshold
    return run_training(cfg, work_dir, launcher=launcher, resume=resume, amp=amp)


def predict_detection(
    config: str,
    checkpoint: str,
    gt_file: str,
    out_dir: str | Path,
    *,
    cfg_options: dict[str, Any] | None = None,
    launcher: str = "none",
) -> dict[str, str]:
    """Run a trained Mask R-CNN over ``gt_file``'s images; write COCO results files
    ``<out_dir>/predictions.{bbox,segm}.json`` and return their paths."""
    from mmengine.runner import Runner

    import boxcaseg.mm  # noqa: F401  (our registered backbone, heads and transforms)
    from boxcaseg.mm.memory_format import apply_memory_format

    patch_mmengine_checkpoint_loading()
    cfg = load_detector_config(config, cfg_options)
    fields = dataset_fields(gt_file)
    cfg.test_dataloader.dataset.update(fields)
    _set_num_classes(cfg.model, len(fields["metainfo"]["classes"]))
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / "predictions"
    cfg.test_evaluator.update(
        ann_file=fields["ann_file"], format_only=True, outfile_prefix=str(prefix)
    )
    cfg.work_dir = str(out_dir / "test_logs")
    cfg.load_from = str(checkpoint)
    cfg.resume = False
    cfg.launcher = launcher
    setup_distributed(cfg, launcher)
    runner = Runner.from_cfg(cfg)
    apply_memory_format(runner.model, cfg)  # as it trained
    try:
        runner.test()
    finally:
        release_visualizer(runner)
    return {"bbox": f"{prefix}.bbox.json", "segm": f"{prefix}.segm.json"}


def iter_detector_masks_in_true_boxes(
    model: Any, cfg: Any, gt_coco: dict[str, Any], image_dir: str | Path
) -> Any:
    """The masks a Mask R-CNN's mask head predicts for the TRUE boxes of ``gt_coco`` (each box
    given as a detection of its true class, score 1): ``(image_id, ann_ids, masks)`` per image,
    masks at the image's full size, as :func:`boxcaseg.quality.instance_ious` takes them.

    It grades what the detector learned about masks apart from what it learned about finding
    objects: with few images and a short schedule the detection part can stay at noise level
    (mask AP near 0 for every variant) while the mask heads already differ."""
    import torch
    from mmengine.dataset import Compose
    from mmengine.structures import InstanceData

    from boxcaseg.data.coco import annotations_by_image

    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    # the dataset's label order: the categories in file order (mmdet's CocoDataset, whose
    # classes `dataset_fields` reads from the same file)
    label_of = {c["id"]: i for i, c in enumerate(gt_coco["categories"])}
    device = next(model.parameters()).device
    by_image = annotations_by_image(gt_coco["annotations"], skip_crowd=True)
    for image in gt_coco["images"]:
        anns = by_image.get(image["id"])
        if not anns:
            continue
        data = pipeline(
            dict(img_path=str(Path(image_dir) / image["file_name"]), img_id=image["id"])
        )
        with torch.no_grad():
            batch = model.data_preprocessor(
                dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]]), False
            )
            features = model.extract_feat(batch["inputs"])
            meta = batch["data_samples"][0].metainfo
            # true boxes (x, y, w, h in the file's pixels) -> x1 y1 x2 y2 in the resized input,
            # where the RoIs live; rescale=True pastes the masks back at the file's size
            scale_x, scale_y = meta["scale_factor"]
            boxes = torch.tensor(
                [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                dtype=torch.float32,
            )
            boxes = boxes * boxes.new_tensor([scale_x, scale_y, scale_x, scale_y])
            given = InstanceData(
                bboxes=boxes.to(device),
                scores=torch.ones(len(anns), device=device),
                labels=torch.tensor([label_of[a["category_id"]] for a in anns], device=device),
            )
            result = model.roi_head.predict_mask(features, [meta], [given], rescale=True)[0]
        yield image["id"], [a["id"] for a in anns], result.masks.cpu().numpy().astype(bool)


def grade_detector_in_true_boxes(
    config: str,
    checkpoint: str,
    gt_file: str,
    *,
    cfg_options: dict[str, Any] | None = None,
    device: str | None = None,
) -> dict[str, Any] | None:
    """mIoU* of a Mask R-CNN's mask head inside the true boxes of ``gt_file``, next to the
    box-as-mask baseline (:func:`boxcaseg.quality.miou_star_report`); None for a detector
    without a RoI mask head (BoxInst predicts its masks from the detection, not from a box)."""
    from boxcaseg.data.coco import load_json
    from boxcaseg.quality import instance_ious, miou_star_report

    cfg = load_detector_config(config, cfg_options)
    roi_head = cfg.model.get("roi_head")
    if not roi_head or not roi_head.get("mask_head"):
        return None
    model = load_detector(cfg, checkpoint, gt_file, device=device)
    gt_coco = load_json(gt_file)
    masks = iter_detector_masks_in_true_boxes(
        model, cfg, gt_coco, dataset_fields(gt_file)["data_prefix"]["img"]
    )
    return miou_star_report(gt_coco, instance_ious(gt_coco, masks))


def load_detector(
    cfg: Any, checkpoint: str | Path, gt_file: str | Path, *, device: str | None = None
) -> Any:
    """A trained detector in eval mode on ``device`` (default: the GPU when there is one), its
    heads sized for the classes of ``gt_file`` as `predict_detection` sizes them."""
    import torch
    from mmdet.apis import init_detector
    from mmengine.model import revert_sync_batchnorm

    import boxcaseg.mm  # noqa: F401  (our registered heads and transforms)
    from boxcaseg.mm.memory_format import apply_memory_format

    patch_mmengine_checkpoint_loading()
    _set_num_classes(cfg.model, len(dataset_fields(gt_file)["metainfo"]["classes"]))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = revert_sync_batchnorm(init_detector(cfg, str(checkpoint), device=device)).eval()
    apply_memory_format(model, cfg)
    return model
