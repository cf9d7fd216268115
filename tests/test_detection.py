"""Stage 5: the drop-aware mask loss, confidences through mmdet's pipeline, real training and
pycocotools evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.structures.mask import BitmapMasks
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData
from PIL import Image

import boxcaseg.mm.det  # noqa: F401  (registers the components)
from boxcaseg.masks import rle_encode
from boxcaseg.mm.det.mask_head import DropAwareFCNMaskHead

TRAIN_CFG = ConfigDict(mask_size=28)


def _batch(confidences):
    """One image, two true instances, three positive RoIs matched to instances 0, 1, 0."""
    masks = np.zeros((2, 32, 32), np.uint8)
    masks[0, 4:20, 4:20] = 1
    masks[1, 10:30, 12:28] = 1
    gt = InstanceData(masks=BitmapMasks(masks, 32, 32), labels=torch.tensor([0, 1]))
    if confidences is not None:
        gt.confidences = torch.tensor(confidences)
    res = SimpleNamespace(
        pos_priors=torch.tensor([[4.0, 4, 20, 20], [12, 10, 28, 30], [2, 2, 22, 22]]),
        pos_assigned_gt_inds=torch.tensor([0, 1, 0]),
        pos_gt_labels=torch.tensor([0, 1, 0]),
    )
    return [res], [gt]


def _heads():
    torch.manual_seed(0)
    kwargs = dict(num_convs=1, in_channels=4, conv_out_channels=4, num_classes=2)
    return DropAwareFCNMaskHead(drop_threshold=0.95, **kwargs), FCNMaskHead(**kwargs)


def test_loss_counts_only_rois_of_kept_instances():
    drop_head, plain_head = _heads()
    preds = torch.randn(3, 2, 28, 28)
    results, gts = _batch([0.99, 0.50])  # instance 1 is dropped
    loss = drop_head.loss_and_target(preds, results, gts, TRAIN_CFG)["loss_mask"]
    kept = [0, 2]
    kept_results = [
        SimpleNamespace(
            pos_priors=results[0].pos_priors[kept],
            pos_assigned_gt_inds=results[0].pos_assigned_gt_inds[kept],
            pos_gt_labels=results[0].pos_gt_labels[kept],
        )
    ]
    expected = plain_head.loss_and_target(preds[kept], kept_results, gts, TRAIN_CFG)["loss_mask"]
    assert loss["loss_mask"].item() == pytest.approx(expected["loss_mask"].item(), rel=1e-6)
    assert loss["mask_kept_frac"].item() == pytest.approx(2 / 3)
    # and it differs from the loss over all RoIs (the dropped one really is left out)
    everything = plain_head.loss_and_target(preds, results, gts, TRAIN_CFG)["loss_mask"][
        "loss_mask"
    ]
    assert abs(everything.item() - loss["loss_mask"].item()) > 1e-4


def test_threshold_is_strict_and_plain_datasets_keep_everything():
    drop_head, plain_head = _heads()
    preds = torch.randn(3, 2, 28, 28)
    at_threshold = drop_head.loss_and_target(preds, *_batch([0.95, 0.95]), TRAIN_CFG)["loss_mask"]
    assert at_threshold["loss_mask"].item() == 0.0  # kept only ABOVE 0.95
    no_conf = drop_head.loss_and_target(preds, *_batch(None), TRAIN_CFG)["loss_mask"]["loss_mask"]
    plain = plain_head.loss_and_target(preds, *_batch(None), TRAIN_CFG)["loss_mask"]["loss_mask"]
    assert no_conf.item() == pytest.approx(plain.item(), rel=1e-6)


def test_no_kept_roi_gives_zero_loss_that_backpropagates():
    drop_head, _ = _heads()
    preds = torch.randn(3, 2, 28, 28, requires_grad=True)
    loss = drop_head.loss_and_target(preds, *_batch([0.1, 0.2]), TRAIN_CFG)["loss_mask"][
        "loss_mask"
    ]
    assert loss.item() == 0.0
    loss.backward()
    assert preds.grad is not None and torch.count_nonzero(preds.grad) == 0


def _write_confidence_coco(tmp_path: Path) -> Path:
    """A 40x20 image with three instances of distinct confidence; the middle one has a
    sub-pixel box that mmdet's parser skips (alignment must survive that)."""
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / "img.png")
    anns = []
    for k, (box, conf) in enumerate(
        [([2, 2, 10, 6], 0.99), ([20, 5, 0.5, 0.5], 0.42), ([25, 8, 12, 10], 0.30)]
    ):
        mask = np.zeros((20, 40), bool)
        x, y, w, h = box
        mask[int(y) : int(y + max(h, 1)), int(x) : int(x + max(w, 1))] = True
        anns.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": box,
                "area": float(mask.sum()),
                "iscrowd": 0,
                "segmentation": rle_encode(mask),
                "confidence": conf,
            }
        )
    coco = {
        "images": [{"id": 1, "file_name": "img.png", "width": 40, "height": 20}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "thing"}],
        "info": {"image_root": str(tmp_path)},
    }
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps(coco))
    return path


def test_dataset_keeps_confidences_aligned_with_masks_after_flip_and_resize(tmp_path):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")
    ann_file = _write_confidence_coco(tmp_path)
    dataset = DATASETS.build(
        dict(
            type="ConfidenceCocoDataset",
            ann_file=str(ann_file),
            data_prefix=dict(img=str(tmp_path) + "/"),
            metainfo=dict(classes=("thing",)),
            pipeline=[
                dict(type="LoadImageFromFile"),
                dict(type="LoadAnnotationsWithConfidence", with_bbox=True, with_mask=True),
                dict(type="Resize", scale=(80, 40), keep_ratio=True),
                dict(type="RandomFlip", prob=1.0),
                dict(type="PackDetInputsWithConfidence"),
            ],
        )
    )
    gt = dataset[0]["data_samples"].gt_instances
    assert gt.confidences.tolist() == pytest.approx([0.99, 0.30])  # the skipped one is gone
    # x2 resize, then horizontal flip in an 80 px wide image
    assert np.allclose(gt.bboxes.tensor.numpy(), [[56, 4, 76, 16], [6, 16, 30, 36]])
    masks = gt.masks.to_ndarray()
    assert masks[0].sum() == 4 * 60 and masks[0][4:16, 56:76].all()
    assert masks[1].sum() == 4 * 120 and masks[1][16:36, 6:30].all()


def test_pack_refuses_misaligned_confidences():
    from mmdet.structures.bbox import HorizontalBoxes

    from boxcaseg.mm.det.dataset import PackDetInputsWithConfidence

    results = {
        "img": np.zeros((4, 4, 3), np.uint8),
        "img_path": "x.png",
        "gt_bboxes": HorizontalBoxes(torch.zeros(2, 4)),
        "gt_bboxes_labels": np.zeros(2, np.int64),
        "gt_ignore_flags": np.zeros(2, bool),
        "gt_confidences": np.ones(3, np.float32),
    }
    with pytest.raises(ValueError, match="3 confidences for 2 boxes"):
        PackDetInputsWithConfidence().transform(results)


@pytest.mark.slow
def test_few_iteration_training_then_pycocotools_evaluation(tiny_data, tmp_path):
    from boxcaseg.data.coco import load_json
    from boxcaseg.detection import predict_detection, train_detection
    from boxcaseg.merge_drop import merge_proxy_file
    from boxcaseg.metrics import COCO_STAT_NAMES, coco_evaluate

    # true masks as "proxies": merged and scored like Stage 4 output
    proxy = merge_proxy_file(load_json(tiny_data["train_gt"]), drop_threshold=0.95)
    train_file = tmp_path / "proxy.json"
    train_file.write_text(json.dumps(proxy))
    options = {
        "train_cfg.max_iters": 4,
        "train_dataloader.batch_size": 2,
        "train_dataloader.num_workers": 0,
        "train_dataloader.persistent_workers": False,
        "test_dataloader.num_workers": 0,
        "default_hooks.checkpoint.interval": 2,
    }
    train_detection(
        "det/maskrcnn_r18_fpn_demo.py",
        tmp_path / "work",
        train_ann=str(train_file),
        drop_threshold=0.95,
        cfg_options=options,
    )
    checkpoint = tmp_path / "work" / "iter_4.pth"
    assert checkpoint.is_file()
    files = predict_detection(
        "det/maskrcnn_r18_fpn_demo.py",
        str(checkpoint),
        str(tiny_data["val_gt"]),
        tmp_path / "val",
        cfg_options=options,
    )
    segm = json.loads(Path(files["segm"]).read_text())
    assert isinstance(segm, list)
    if segm:  # an untrained model may find nothing; what it finds must be COCO results
        assert {"image_id", "category_id", "segmentation", "score"} <= set(segm[0])
    metrics = coco_evaluate(str(tiny_data["val_gt"]), files["segm"], "segm")
    assert set(metrics) == set(COCO_STAT_NAMES)
    assert all(v is None or 0.0 <= v <= 100.0 for v in metrics.values())

    # The mask head alone, given the true boxes (eval-det's mask_head_in_true_boxes), at a test
    # scale of 0.75 so that box coordinates must go through the resize and back. A mask head
    # made to say "foreground everywhere" must return each true box filled (box-as-mask), one
    # saying "background everywhere" empty masks: a misplaced box would show in both.
    from boxcaseg.detection import (
        dataset_fields,
        grade_detector_in_true_boxes,
        iter_detector_masks_in_true_boxes,
        load_detector,
    )
    from boxcaseg.engine import load_config
    from boxcaseg.masks import box_to_mask

    options["test_dataloader.dataset.pipeline.1.scale"] = (96, 96)
    val = load_json(tiny_data["val_gt"])
    instances = [a for a in val["annotations"] if not a.get("iscrowd")]
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    graded = {}
    for name, bias in (("all_foreground", 20.0), ("all_background", -20.0)):
        state["state_dict"]["roi_head.mask_head.conv_logits.weight"].zero_()
        state["state_dict"]["roi_head.mask_head.conv_logits.bias"].fill_(bias)
        torch.save(state, tmp_path / f"{name}.pth")
        graded[name] = grade_detector_in_true_boxes(
            "det/maskrcnn_r18_fpn_demo.py",
            str(tmp_path / f"{name}.pth"),
            str(tiny_data["val_gt"]),
            cfg_options=options,
        )
    assert graded["all_background"]["model"]["miou_star"] == 0.0
    assert graded["all_foreground"]["model"]["miou_star"] == pytest.approx(
        graded["all_foreground"]["box_as_mask"]["miou_star"], abs=0.02
    )

    cfg = load_config("det/maskrcnn_r18_fpn_demo.py", options)
    model = load_detector(cfg, tmp_path / "all_foreground.pth", tiny_data["val_gt"], device="cpu")
    images = {img["id"]: img for img in val["images"]}
    anns = {a["id"]: a for a in instances}
    seen = []
    image_dir = dataset_fields(tiny_data["val_gt"])["data_prefix"]["img"]
    for image_id, ann_ids, masks in iter_detector_masks_in_true_boxes(model, cfg, val, image_dir):
        h, w = images[image_id]["height"], images[image_id]["width"]
        for ann_id, mask in zip(ann_ids, masks):
            _, _, box_w, box_h = anns[ann_id]["bbox"]
            assert mask.shape == (h, w)
            # the box filled, up to a one-pixel rim of rounding
            wrong = np.logical_xor(mask, box_to_mask(anns[ann_id]["bbox"], h, w)).sum()
            assert wrong <= 2 * (box_w + box_h) + 4, (ann_id, wrong)
        seen += ann_ids
    assert sorted(seen) == sorted(anns)


@pytest.mark.parametrize(
    "child, parent",
    [
        ("det/maskrcnn_r18_fpn_real_cpu.py", "det/maskrcnn_r18_fpn_demo.py"),
        ("det/boxinst_r18_fpn_real_cpu.py", "det/boxinst_r18_fpn_demo.py"),
    ],
)
def test_a_real_photo_config_changes_only_the_scale_of_its_parents_pipelines(child, parent):
    """The child states the scale once (mmengine's `_base_.` syntax); its pipelines are the
    parent's with that scale, nothing else."""
    from boxcaseg.engine import load_config

    kid, base = load_config(child), load_config(parent)
    for loader in ("train_dataloader", "test_dataloader"):
        mine = [dict(t) for t in kid[loader].dataset.pipeline]
        theirs = [dict(t) for t in base[loader].dataset.pipeline]
        assert [t.pop("scale", None) for t in mine] == [
            (256, 256) if t.pop("scale", None) else None for t in theirs
        ]
        assert mine == theirs


def test_a_stretched_schedule_keeps_its_milestones_and_pairwise_ramp_at_their_fraction():
    """boxinst_equal trains BoxInst `boxinst_equal_ratio` times as long: the lr step stays at
    3/4 of training and the pairwise term's ramp-up at 1/9, the lr warm-up at the start stays."""
    from boxcaseg.detection import stretch_schedule
    from boxcaseg.engine import load_config

    cfg = load_config("det/boxinst_lite0_fpn_demo.py")
    assert cfg.train_cfg.max_iters == 300 and cfg.model.mask_head.warmup_iters == 33
    line = stretch_schedule(cfg, 3.5)
    assert cfg.train_cfg.max_iters == 1050 and "300 -> 1050" in line
    warmup, step = cfg.param_scheduler
    assert (warmup.type, warmup.end) == ("LinearLR", 50)
    assert step.end == 1050 and step.milestones == [788]  # 225 of 300 -> 3/4 of 1050
    assert cfg.model.mask_head.warmup_iters == 116  # 33 of 300 -> 1/9 of 1050
