"""Stage 2 model: the two heads, the per-term losses, and real mmseg/mmengine training."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import boxcaseg.mm.seg  # noqa: F401  (registers the components)
from boxcaseg.data.coco import load_json
from boxcaseg.mm.seg.dataset import BoxCasegCrop, KindRatioBatchSampler, overlapping_instances
from boxcaseg.mm.seg.model import BoxCasegHead
from boxcaseg.training import load_config

DEMO_CONFIG = "seg/boxcaseg_hr18s_demo.py"


def test_transfer_head_learns_from_salient_loss_without_touching_box_classifier():
    torch.manual_seed(0)
    head = BoxCasegHead(in_channels=[4, 4], channels=8, alpha=0.6)
    feats = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)]
    box_logits, salient_logits = head(feats)
    assert box_logits.shape == salient_logits.shape == (2, 1, 8, 8)
    salient_logits.mean().backward()  # a loss on the salient output only
    assert head.box_cls.weight.grad is None  # the box classifier's weights are detached
    assert head.transfer_mlp[0].weight.grad.abs().sum() > 0
    assert head.box_hidden.conv.weight.grad.abs().sum() > 0  # shared features still learn
    assert head.fcn_cls.weight.grad.abs().sum() > 0


def test_salient_output_is_the_alpha_blend_of_fcn_and_transfer():
    torch.manual_seed(0)
    head = BoxCasegHead(in_channels=[3], channels=5, alpha=1.0).eval()
    feats = [torch.randn(1, 3, 4, 4)]
    _, fcn_only = head(feats)
    assert torch.allclose(fcn_only, head.fcn_cls(head.fcn_hidden(feats[0])))
    head.alpha = 0.0
    _, transfer_only = head(feats)
    w = head.transfer_mlp(head.box_cls.weight.flatten(1)).view_as(head.box_cls.weight)
    b = head.transfer_k * head.box_cls.bias + head.transfer_b0
    expected = torch.nn.functional.conv2d(head.box_hidden(feats[0]), w, b)
    assert torch.allclose(transfer_only, expected, atol=1e-6)


def test_crop_transform_gives_box_label_and_salient_mask(tiny_data):
    train = load_json(tiny_data["train_boxes"])
    salient = load_json(tiny_data["salient"])["salient"][0]
    ann = train["annotations"][0]
    img = np.zeros((64, 64, 3), np.uint8)
    crop = BoxCasegCrop(crop_size=32, salient_resize=36, center_shift=0.0, scale_range=(1.0, 1.0))
    out = crop({"img": img, "sample_kind": "box", "bbox": [8.0, 8.0, 16.0, 16.0]})
    assert out["img"].shape == (32, 32, 3)
    assert out["gt_seg_map"].all()  # no jitter: the window is the box, all inside
    from mmcv import imread

    sal = crop({"img": imread(salient["image"]), "sample_kind": "salient", "mask_path": salient["mask"]})
    assert sal["gt_seg_map"].shape == (32, 32) and set(np.unique(sal["gt_seg_map"])) <= {0, 1}
    assert sal["gt_seg_map"].any()
    assert ann["bbox"]  # the fixture has boxes


class _ListSampler(torch.utils.data.Sampler):
    def __init__(self, dataset, order):
        self.dataset, self.order = dataset, order

    def __iter__(self):
        return iter(self.order)

    def __len__(self):
        return len(self.order)


class _FakeDataset:
    """Just the two arrays the batch sampler reads."""

    _fully_initialized = True

    def __init__(self, kinds, overlaps):
        self.sample_kinds = np.array(kinds)
        self.overlap_flags = np.array(overlaps, dtype=bool)


def test_fixed_ratio_batches():
    kinds = ["box"] * 12 + ["salient"] * 4
    data = _FakeDataset(kinds, [False] * 16)
    order = list(np.random.default_rng(0).permutation(16)) * 3
    sampler = KindRatioBatchSampler(_ListSampler(data, order), batch_size=4, box_per_batch=3)
    batches = list(sampler)
    assert len(batches) >= 4
    for batch in batches:
        assert sum(kinds[i] == "box" for i in batch) == 3
        assert sum(kinds[i] == "salient" for i in batch) == 1


def test_uniform_mixing_and_overlap_skip():
    kinds = ["box"] * 8
    overlaps = [True] * 4 + [False] * 4
    data = _FakeDataset(kinds, overlaps)
    order = list(range(8)) * 50
    always_skip = KindRatioBatchSampler(_ListSampler(data, order), batch_size=4,
                                        overlap_skip_prob=1.0)
    seen = {i for batch in always_skip for i in batch}
    assert seen == {4, 5, 6, 7}
    half = KindRatioBatchSampler(_ListSampler(data, order), batch_size=4, overlap_skip_prob=0.75)
    counts = np.bincount([i for batch in half for i in batch], minlength=8)
    ratio = counts[:4].sum() / counts[4:].sum()
    assert 0.15 < ratio < 0.35  # kept with probability 0.25


def test_overlapping_instances_flags_pairs_above_threshold():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [50, 50, 5, 5]], float)
    assert overlapping_instances(boxes, 0.5).tolist() == [True, True, False]
    assert overlapping_instances(boxes, 0.9).tolist() == [False, False, False]


def _fixed_batch(cfg, tiny_data, size=4):
    """A fixed batch of 2 box + 2 salient samples through the real dataset pipeline."""
    from mmseg.registry import DATASETS

    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.ann_file = str(tiny_data["train_boxes"])
    ds_cfg.salient_file = str(tiny_data["salient"])
    dataset = DATASETS.build(ds_cfg)
    kinds = dataset.sample_kinds
    idx = list(np.flatnonzero(kinds == "box")[:2]) + list(np.flatnonzero(kinds == "salient")[:2])
    samples = [dataset[int(i)] for i in idx]
    return {"inputs": [s["inputs"] for s in samples], "data_samples": [s["data_samples"] for s in samples]}


def test_total_loss_goes_down_on_a_fixed_tiny_batch(tiny_data):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    torch.manual_seed(0)
    init_default_scope("mmseg")
    cfg = load_config(DEMO_CONFIG)
    model = MODELS.build(cfg.model)
    model.init_weights()
    batch = _fixed_batch(cfg, tiny_data)
    optim = build_optim_wrapper(model, dict(optimizer=dict(type="SGD", lr=0.02, momentum=0.9)))
    totals = []
    for _ in range(12):
        log_vars = model.train_step(batch, optim)
        assert {"loss_mil", "loss_pair", "loss_sal"} <= set(log_vars)
        totals.append(float(log_vars["loss"].detach()))
    assert totals[-1] < 0.7 * totals[0], totals


@pytest.mark.slow
def test_training_writes_checkpoints_and_resumes_after_a_kill(tiny_data, tmp_path):
    """A real `boxcaseg train-seg` process killed midway; the rerun resumes from its last
    checkpoint instead of starting over, and finishes with mIoU* written."""
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "boxcaseg.cli", "train-seg", "--config", DEMO_CONFIG,
           "--train", str(tiny_data["train_boxes"]), "--salient", str(tiny_data["salient"]),
           "--val", str(tiny_data["val_gt"]), "--work-dir", str(work),
           "--checkpoint-out", str(tmp_path / "final.pth"), "--metrics-out", str(tmp_path / "m.json"),
           "--section", '{"max_iters": 40, "batch_size": 4, "box_per_batch": 2, "num_workers": 0,'
           ' "cfg_options": {"default_hooks.checkpoint.interval": 5, "default_hooks.logger.interval": 5}}']
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                             start_new_session=True)
    deadline = time.time() + 300
    while not (work / "iter_10.pth").exists():
        assert first.poll() is None, "training ended before it could be interrupted"
        assert time.time() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # as a scheduler would
    first.wait()
    assert not (tmp_path / "final.pth").exists()
    # the last COMPLETE checkpoint (mmengine updates this pointer after a save finishes)
    resume_from = Path((work / "last_checkpoint").read_text().strip())
    done = int(resume_from.stem.split("_")[1])
    assert 5 <= done < 40

    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert f"resumed epoch: 0, iter: {done}" in log
    assert f"Iter(train) [{done:2d}/40]" not in log  # nothing up to the checkpoint is redone
    assert f"Iter(train) [{done + 5:2d}/40]" in log
    assert (tmp_path / "final.pth").stat().st_size > 0
    metrics = load_json(tmp_path / "m.json")
    assert 0.0 <= metrics["model"]["miou_star"] <= 1.0 and metrics["model"]["instances"] > 0
    ckpt = torch.load(tmp_path / "final.pth", map_location="cpu", weights_only=False)
    assert ckpt["meta"]["iter"] == 40
