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
from boxcaseg.engine import load_config, resume_checkpoint
from boxcaseg.mm.seg.dataset import BoxCasegCrop, KindRatioBatchSampler, overlapping_instances
from boxcaseg.mm.seg.model import BoxCasegHead
from tests.commands import DEMO_SEG_CONFIG, train_seg_args


def _head(alpha=0.6, **kwargs):
    torch.manual_seed(0)
    return BoxCasegHead(in_channels=[4, 4], channels=6, alpha=alpha, **kwargs)


def _feats(n=4):
    return [torch.randn(n, 4, 8, 8, requires_grad=True), torch.randn(n, 4, 4, 4)]


def test_salient_loss_never_reaches_a_box_head_parameter():
    """The published design: the transfer head regenerates both box-head convs from their
    DETACHED weights and runs on the backbone features, so a loss on the salient output
    trains the FCN head, both transfer MLPs, the transfer BN and the backbone, nothing of
    the box head."""
    head = _head()
    feats = _feats()
    salient = torch.tensor([False, True, False, True])
    box_logits, salient_logits = head(feats, salient)
    assert box_logits.shape == (4, 1, 8, 8) and salient_logits.shape == (2, 1, 8, 8)
    salient_logits.square().mean().backward()  # a loss on the salient output only
    # transfer1's bias (k * b + b0) sits right before the transfer BN, which cancels it in
    # training: in the graph, but with a zero gradient (as in the authors' network)
    before_bn = {"transfer_hidden.k", "transfer_hidden.b0"}
    for name, param in head.named_parameters():
        if name.startswith(("box_hidden.", "box_cls.")):
            assert param.grad is None, f"salient loss reached the box head: {name}"
        else:
            assert param.grad is not None, f"{name} is not in the salient path"
            assert name in before_bn or param.grad.abs().sum() > 0, f"{name} does not learn"
    assert {n.split(".")[0] for n, _ in head.named_parameters()} == {
        "box_hidden",
        "box_cls",
        "fcn_hidden",
        "fcn_cls",
        "transfer_hidden",
        "transfer_norm",
        "transfer_cls",
    }
    assert feats[0].grad.abs().sum() > 0  # the backbone learns from salient images


def test_box_loss_trains_the_box_head_only_through_box_logits():
    head = _head()
    feats = _feats()
    box_logits, _ = head(feats, torch.tensor([False, True, False, True]))
    box_logits.mean().backward()
    assert (
        head.box_cls.weight.grad.abs().sum() > 0
        and head.box_hidden.conv.weight.grad.abs().sum() > 0
    )
    assert all(p.grad is None for p in head.salient_parameters())


def test_transfer_path_regenerates_both_convs_from_the_box_head():
    head = _head(alpha=0.0).eval()
    x = head.fuse_inputs([f.detach() for f in _feats()])
    w1 = head.transfer_hidden.mlp(head.box_hidden.conv.weight.flatten(1)).view_as(
        head.box_hidden.conv.weight
    )
    b1 = head.transfer_hidden.k * head.box_hidden.conv.bias + head.transfer_hidden.b0
    hidden = torch.relu(head.transfer_norm(torch.nn.functional.conv2d(x, w1, b1)))
    w2 = head.transfer_cls.mlp(head.box_cls.weight.flatten(1)).view_as(head.box_cls.weight)
    b2 = head.transfer_cls.k * head.box_cls.bias + head.transfer_cls.b0
    expected = torch.nn.functional.conv2d(hidden, w2, b2)
    assert torch.allclose(head.transfer_logits(x), expected, atol=1e-6)
    # the MLP is applied to every output row: in -> 4 in -> in (720 -> 2880 -> 720 for W48)
    assert head.transfer_hidden.mlp[0].weight.shape == (4 * 8, 8)
    assert head.transfer_cls.mlp[0].weight.shape == (4 * 6, 6)
    assert (
        abs(float(head.transfer_hidden.mlp[0].weight.detach().std()) - 0.01) < 0.005
    )  # N(0, 0.01)


def test_salient_output_is_the_alpha_blend_of_fcn_and_transfer():
    head = _head(alpha=0.7).eval()
    feats = [f.detach() for f in _feats()]
    x = head.fuse_inputs(feats)
    _, blended = head(feats)
    fcn = head.fcn_cls(head.fcn_hidden(x))
    assert torch.allclose(blended, 0.7 * fcn + 0.3 * head.transfer_logits(x), atol=1e-6)


def test_salient_heads_batch_norm_sees_salient_samples_only():
    head = _head().train()
    feats = [f.detach() for f in _feats()]
    salient = torch.tensor([False, True, False, True])
    feats[0][~salient] += 100.0  # box crops with wildly different statistics
    head(feats, salient)
    alone = _head().train()
    alone([f[salient] for f in feats])
    for name in ("fcn_hidden.bn", "transfer_norm"):
        ours, reference = head.get_submodule(name), alone.get_submodule(name)
        assert torch.allclose(ours.running_mean, reference.running_mean, atol=1e-6), name
        assert torch.allclose(ours.running_var, reference.running_var, atol=1e-5), name
    assert not torch.allclose(head.box_hidden.bn.running_mean, alone.box_hidden.bn.running_mean)


def test_a_batch_without_salient_samples_keeps_every_parameter_in_the_graph():
    from boxcaseg.losses import salient_loss

    head = _head().train()
    before = head.fcn_hidden.bn.running_mean.clone()
    box_logits, salient_logits = head(_feats(), torch.zeros(4, dtype=torch.bool))
    assert salient_logits.shape[0] == 0
    loss = box_logits.mean() + salient_loss(salient_logits, torch.zeros(0, 8, 8))
    loss.backward()
    # DDP needs a gradient (here zero) for every parameter; BN statistics are untouched
    assert all(p.grad is not None for p in head.parameters())
    assert all(torch.count_nonzero(p.grad) == 0 for p in head.salient_parameters())
    assert torch.equal(head.fcn_hidden.bn.running_mean, before)


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

    sal = crop(
        {"img": imread(salient["image"]), "sample_kind": "salient", "mask_path": salient["mask"]}
    )
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
    always_skip = KindRatioBatchSampler(
        _ListSampler(data, order), batch_size=4, overlap_skip_prob=1.0
    )
    seen = {i for batch in always_skip for i in batch}
    assert seen == {4, 5, 6, 7}
    half = KindRatioBatchSampler(_ListSampler(data, order), batch_size=4, overlap_skip_prob=0.75)
    counts = np.bincount([i for batch in half for i in batch], minlength=8)
    ratio = counts[:4].sum() / counts[4:].sum()
    assert 0.15 < ratio < 0.35  # kept with probability 0.25


def test_class_balance_keeps_a_dominant_class_with_probability_sqrt_t_over_f():
    """12 boxes of class 1, 3 of class 2, 1 of class 3, each coming up as often: with
    class_balance 1/16 they are kept with probability sqrt(1/12), sqrt(1/3) and 1; salient
    samples are never skipped."""
    from boxcaseg.mm.seg.dataset import class_keep_probabilities

    kinds = ["box"] * 16 + ["salient"] * 4
    data = _FakeDataset(kinds, [False] * 20)
    data.category_ids = np.array([1] * 12 + [2] * 3 + [3] + [-1] * 4)
    keep = class_keep_probabilities(data.category_ids, data.sample_kinds == "box", 1 / 16)
    assert keep[0] == pytest.approx(np.sqrt(1 / 12)) and keep[12] == pytest.approx(np.sqrt(1 / 3))
    assert keep[15] == 1.0 and (keep[16:] == 1.0).all()
    rng = np.random.default_rng(0)
    order = [int(i) for _ in range(6000) for i in rng.permutation(20)]
    sampler = KindRatioBatchSampler(
        _ListSampler(data, order), batch_size=4, box_per_batch=2, class_balance=1 / 16
    )
    counts = np.bincount([i for batch in sampler for i in batch], minlength=20)
    per_box = [counts[:12].mean(), counts[12:15].mean(), counts[15]]
    assert per_box[0] / per_box[2] == pytest.approx(np.sqrt(1 / 12), rel=0.15)
    assert per_box[1] / per_box[2] == pytest.approx(np.sqrt(1 / 3), rel=0.15)
    assert counts[:16].sum() == counts[16:].sum()  # still 2 box + 2 salient a batch


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
    return {
        "inputs": [s["inputs"] for s in samples],
        "data_samples": [s["data_samples"] for s in samples],
    }


def test_total_loss_goes_down_on_a_fixed_tiny_batch(tiny_data):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    torch.manual_seed(0)
    init_default_scope("mmseg")
    cfg = load_config(DEMO_SEG_CONFIG)
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
    section = {
        "max_iters": 40,
        "batch_size": 4,
        "box_per_batch": 2,
        "num_workers": 0,
        "cfg_options": {"default_hooks.checkpoint.interval": 5, "default_hooks.logger.interval": 5},
    }
    cmd = [
        sys.executable,
        "-m",
        "boxcaseg.cli",
        *train_seg_args(
            tiny_data, work, section, checkpoint=tmp_path / "final.pth", metrics=tmp_path / "m.json"
        ),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    first = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.time() + 300
    while not (work / "iter_10.pth").exists():
        assert first.poll() is None, "training ended before it could be interrupted"
        assert time.time() < deadline, "no checkpoint within 5 minutes"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # as a scheduler would
    first.wait()
    assert not (tmp_path / "final.pth").exists()
    # the last COMPLETE checkpoint (mmengine updates last_checkpoint after a save finishes; a
    # kill while it rewrites that pointer leaves it empty: resume_checkpoint handles both)
    done = int(resume_checkpoint(work).stem.split("_")[1])
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


def test_real_photo_config_trains_with_the_colour_pairwise_term(tiny_data):
    """seg/boxcaseg_hr18s_real_cpu.py: the colour-affinity term on box samples, photometric
    augmentation, its own optimiser (AdamW), weight averaging (EMAHook); one step runs and
    every loss term is finite."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    torch.manual_seed(0)
    init_default_scope("mmseg")
    cfg = load_config("seg/boxcaseg_hr18s_real_cpu.py")
    assert cfg.model.loss_pair.type == "ColourPairwiseLoss"
    assert [t["type"] for t in cfg.train_dataloader.dataset.pipeline][2] == "PhotoMetricDistortion"
    assert {"type": "EMAHook", "momentum": 0.01} in [
        {k: h[k] for k in ("type", "momentum") if k in h} for h in cfg.custom_hooks
    ]
    model = MODELS.build(cfg.model)
    model.init_weights()
    batch = _fixed_batch(cfg, tiny_data)
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    assert type(optim.optimizer).__name__ == "AdamW"  # not the demo's SGD under it
    before = [p.detach().clone() for p in model.parameters()]
    log_vars = model.train_step(batch, optim)
    assert all(torch.isfinite(log_vars[k]) for k in ("loss_mil", "loss_pair", "loss_sal"))
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert 0.0 < log_vars["loss_pair"].detach().item() < 2.0


def test_salient_sample_cropped_like_a_box_sample_around_its_object():
    """salient_box_crop=1: the salient image is cropped around its mask's box (no jitter
    here: exactly the box), so its label fills the crop as an exact-box crop's would."""
    import cv2

    mask = np.zeros((60, 80), np.uint8)
    cv2.circle(mask, (50, 30), 10, 255, -1)  # object box: x 40..60, y 20..40
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"boxcaseg_salient_mask_{os.getpid()}.png"
    cv2.imwrite(str(path), mask)
    crop = BoxCasegCrop(
        crop_size=21,
        salient_resize=24,
        center_shift=0.0,
        scale_range=(1.0, 1.0),
        flip_prob=0.0,
        salient_box_crop=1.0,
    )
    out = crop(
        {
            "img": np.zeros((60, 80, 3), np.uint8),
            "sample_kind": "salient",
            "mask_path": str(path),
            "bbox": [40.0, 20.0, 21.0, 21.0],
        }
    )
    path.unlink()
    label = out["gt_seg_map"]
    assert label.shape == (21, 21)
    assert label.mean() > 0.7  # the disc fills its box (pi/4); a whole-image crop: ~0.07
    assert label[10, 10] == 1 and label[0, 0] == 0


def _demo_model_for_inference():
    """The demo config's segmentor, seeded weights, in eval mode."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    init_default_scope("mmseg")
    torch.manual_seed(0)
    model = MODELS.build(load_config(DEMO_SEG_CONFIG).model)
    model.init_weights()
    return model.eval()


def test_inference_flip_averages_the_mirrored_crop():
    model = _demo_model_for_inference()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        plain = model.salient_logits(x)
        mirrored = model.head_logits(x.flip(-1))[1].flip(-1)
        model.test_cfg["flip"] = True
        assert torch.allclose(model.salient_logits(x), 0.5 * (plain + mirrored), atol=1e-6)
        model.train()  # training never averages
        assert model.test_cfg["flip"] and model.salient_logits(x).shape == plain.shape


def test_inference_scales_average_the_resized_crops_logits():
    import torch.nn.functional as F

    model = _demo_model_for_inference()
    x = torch.randn(2, 3, 32, 32)

    def resized(t, size):
        return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)

    with torch.no_grad():
        plain = model.salient_logits(x)
        larger = resized(model.head_logits(resized(x, 48))[1], 32)
        model.test_cfg["scales"] = (1.0, 1.5)
        assert torch.allclose(model.salient_logits(x), 0.5 * (plain + larger), atol=1e-5)
        model.test_cfg["flip"] = True  # each scale with its mirror image: four views
        mirrored = model.head_logits(x.flip(-1))[1].flip(-1)
        larger_mirrored = resized(model.head_logits(resized(x, 48).flip(-1))[1].flip(-1), 32)
        expected = (plain + mirrored + larger + larger_mirrored) / 4
        assert torch.allclose(model.salient_logits(x), expected, atol=1e-5)
        assert not torch.allclose(expected, plain, atol=1e-3)  # the views do differ


def test_inference_views_are_rounded_to_the_size_divisor():
    """At 40 px with scales 0.75 and 1.25 the views would be 30 and 50 px; with size_divisor
    16 they are 32 and 48 (and the crop itself stays 40), each resized back to 40."""
    model = _demo_model_for_inference()
    seen = []
    head_logits = model.head_logits

    def recording(inputs):
        seen.append(tuple(inputs.shape[2:]))
        return head_logits(inputs)

    model.head_logits = recording
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        model.test_cfg["scales"] = (0.75, 1.0, 1.25)
        unrounded = model.salient_logits(x)
        assert seen == [(30, 30), (40, 40), (50, 50)]
        seen.clear()
        model.test_cfg["size_divisor"] = 16
        rounded = model.salient_logits(x)
        assert seen == [(32, 32), (40, 40), (48, 48)]
    assert rounded.shape == unrounded.shape == (1, 1, 40, 40)
    assert not torch.allclose(rounded, unrounded, atol=1e-4)


@pytest.mark.slow
def test_weight_average_is_what_the_checkpoint_holds_and_the_hook_grades(tiny_data, tmp_path):
    """With an EMAHook (the real-photo config has one) a real `boxcaseg train-seg` run saves
    the averaged weights as the checkpoint's `state_dict` (the raw ones as `ema_state_dict`),
    and its mIoU* is that of the averaged weights, the ones Stage 3 predicts with."""
    from mmengine.runner.checkpoint import load_state_dict

    from boxcaseg.mm.seg.model import load_segmentor
    from boxcaseg.proxy_inference import grade_in_true_boxes

    hooks = [
        {
            "type": "MIoUStarHook",
            "ann_file": None,
            "interval": 0,
            "input_size": 64,
            "batch_size": 8,
        },
        {"type": "EMAHook", "momentum": 0.3, "priority": "ABOVE_NORMAL"},
    ]
    section = {
        "seed": 0,
        "max_iters": 8,
        "batch_size": 4,
        "box_per_batch": 2,
        "num_workers": 0,
        "cfg_options": {"custom_hooks": hooks, "optim_wrapper.optimizer.lr": 0.05},
    }
    cmd = [
        sys.executable,
        "-m",
        "boxcaseg.cli",
        *train_seg_args(
            tiny_data,
            tmp_path / "work",
            section,
            checkpoint=tmp_path / "final.pth",
            metrics=tmp_path / "m.json",
        ),
    ]
    done = subprocess.run(
        cmd,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    ckpt = torch.load(tmp_path / "final.pth", map_location="cpu", weights_only=False)
    averaged = ckpt["state_dict"]
    raw = {k.removeprefix("module."): v for k, v in ckpt["ema_state_dict"].items() if k != "steps"}
    assert averaged.keys() == raw.keys()
    assert not torch.allclose(averaged["backbone.conv1.weight"], raw["backbone.conv1.weight"])

    gt = load_json(tiny_data["val_gt"])
    model = load_segmentor(str(tmp_path / "final.pth"), "cpu")

    def graded() -> float:
        return grade_in_true_boxes(model, gt, input_size=64, batch_size=8)["model"]["miou_star"]

    hook_figure = load_json(tmp_path / "m.json")["model"]["miou_star"]
    assert hook_figure == pytest.approx(graded(), abs=1e-9)  # the averaged weights' figure
    load_state_dict(model, raw)
    assert graded() != pytest.approx(hook_figure, abs=1e-6)  # ... and not the raw weights'
