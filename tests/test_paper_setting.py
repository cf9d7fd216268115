"""The paper's setting made safe: pretrained checkpoints checked key by key (generated here in
the official HRNet-ImageNet, mmseg and torchvision ResNet layouts: no downloads), the global
batch split over the GPU count, epoch schedules given an iteration budget, a from-scratch
detector unfrozen, Stage 3 built from the checkpoint's own config, the sampler seeded from
the config, and dropped instances kept for the detector's box heads."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import boxcaseg.mm.det  # noqa: F401  (registers the components)
import boxcaseg.mm.seg  # noqa: F401
from boxcaseg.data.report import DataError
from boxcaseg.engine import (
    apply_global_batch,
    backbone_from_scratch,
    load_config,
)
from boxcaseg.mm.pretrained import CheckedPretrainedInit, CheckpointMismatchError
from tests.commands import train_seg_args

HRNET_W18 = dict(
    type="HRNet",
    norm_cfg=dict(type="BN", requires_grad=True),
    extra=dict(
        stage1=dict(
            num_modules=1, num_branches=1, block="BOTTLENECK", num_blocks=(1,), num_channels=(64,)
        ),
        stage2=dict(
            num_modules=1, num_branches=2, block="BASIC", num_blocks=(1, 1), num_channels=(18, 36)
        ),
        stage3=dict(
            num_modules=1,
            num_branches=3,
            block="BASIC",
            num_blocks=(1, 1, 1),
            num_channels=(18, 36, 72),
        ),
        stage4=dict(
            num_modules=1,
            num_branches=4,
            block="BASIC",
            num_blocks=(1, 1, 1, 1),
            num_channels=(18, 36, 72, 144),
        ),
    ),
)


def _hrnet(width: int = 18) -> torch.nn.Module:
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    init_default_scope("mmseg")
    cfg = json.loads(json.dumps(HRNET_W18))
    chans = {18: (18, 36, 72, 144), 48: (48, 96, 192, 384)}[width]
    for k, stage in enumerate(("stage2", "stage3", "stage4"), start=2):
        cfg["extra"][stage]["num_channels"] = chans[:k]
    torch.manual_seed(width)
    return MODELS.build(cfg)


def _resnet(depth: int) -> torch.nn.Module:
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    init_default_scope("mmdet")
    return MODELS.build(dict(type="ResNet", depth=depth, init_cfg=None))


def official_hrnet_checkpoint(path: Path, width: int = 18) -> Path:
    """The official HRNet ImageNet layout: backbone keys at the top level plus the
    classification head (incre_modules, downsamp_modules, final_layer, classifier)."""
    state = dict(_hrnet(width).state_dict())
    state.update(
        {
            "incre_modules.0.0.conv1.weight": torch.zeros(32, 18, 1, 1),
            "downsamp_modules.0.0.weight": torch.zeros(128, 32, 3, 3),
            "final_layer.0.weight": torch.zeros(2048, 1024, 1, 1),
            "classifier.weight": torch.zeros(1000, 2048),
            "classifier.bias": torch.zeros(1000),
        }
    )
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, path)
    return path


def mmseg_checkpoint(path: Path) -> Path:
    """A whole mmseg segmentor's checkpoint: {'state_dict': {'backbone.*', 'decode_head.*'}, 'meta'}."""
    state = {f"backbone.{k}": v for k, v in _hrnet(18).state_dict().items()}
    state["decode_head.conv_seg.weight"] = torch.zeros(19, 270, 1, 1)
    torch.save({"state_dict": state, "meta": {"note": "mmseg"}}, path)
    return path


def torchvision_resnet_checkpoint(path: Path, depth: int) -> Path:
    """torchvision's ResNet layout (what torchvision's ImageNet weights look like): fc.* extra."""
    import torchvision

    model = {
        18: torchvision.models.resnet18,
        50: torchvision.models.resnet50,
        101: torchvision.models.resnet101,
    }[depth]()
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture
def mm_log(request):
    """What mmengine's current logger writes during the test (a fresh logger per test)."""
    import io
    import logging

    from mmengine.logging import MMLogger

    stream = io.StringIO()
    logger = MMLogger.get_instance(f"test-{request.node.name}", log_level="INFO")
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


# --- 8. pretrained checkpoints are checked ------------------------------------------------------


@pytest.mark.parametrize("layout", ["official", "mmseg"])
def test_hrnet_checkpoint_layouts_load_completely(tmp_path, layout, mm_log):
    path = (
        official_hrnet_checkpoint(tmp_path / "w18.pth")
        if layout == "official"
        else mmseg_checkpoint(tmp_path / "seg.pth")
    )
    source = torch.load(path, weights_only=False)
    source = source.get("state_dict", source)
    target = _hrnet(18)
    CheckedPretrainedInit(str(path))(target)
    for key, value in target.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        stored = source.get(key, source.get(f"backbone.{key}"))
        assert torch.equal(value, stored), key
    out = mm_log.getvalue()
    n = sum(1 for k in target.state_dict() if not k.endswith("num_batches_tracked"))
    assert f"{n} of {n} keys matched (100%), 0 missing" in out
    if layout == "official":  # the classification head is reported, not loaded
        assert "unexpected (not used): classifier.bias, classifier.weight" in out


def test_torchvision_resnet_layout_loads_with_fc_unexpected(tmp_path, mm_log):
    path = torchvision_resnet_checkpoint(tmp_path / "r18.pth", 18)
    model = _resnet(18)
    CheckedPretrainedInit(str(path))(model)
    reference = torch.load(path, weights_only=False)
    assert torch.equal(
        model.state_dict()["layer4.1.conv2.weight"], reference["layer4.1.conv2.weight"]
    )
    out = mm_log.getvalue()
    assert "100%" in out and "2 unexpected" in out and "fc.bias, fc.weight" in out


@pytest.mark.parametrize("case", ["w18_into_w48", "r18_into_r50"])
def test_a_checkpoint_of_another_architecture_stops_with_a_clear_error(tmp_path, case):
    if case == "w18_into_w48":
        path, model = official_hrnet_checkpoint(tmp_path / "w18.pth"), _hrnet(48)
    else:
        path, model = torchvision_resnet_checkpoint(tmp_path / "r18.pth", 18), _resnet(50)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        CheckedPretrainedInit(str(path))(model)
    message = str(err.value)
    assert str(path) in message and "keys matched" in message and "need 90%" in message
    assert isinstance(err.value, DataError)  # the CLI prints DataErrors without a traceback
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing loaded


def test_the_checked_loader_has_its_own_name(tmp_path):
    """Configs name the checked loader (`CheckedPretrained`); mmengine's `Pretrained` is left
    as mmengine has it (importing BoxCaseg changes no registered name)."""
    from mmengine.model.weight_init import PretrainedInit
    from mmengine.registry import WEIGHT_INITIALIZERS

    assert WEIGHT_INITIALIZERS.get("CheckedPretrained") is CheckedPretrainedInit
    assert WEIGHT_INITIALIZERS.get("Pretrained") is PretrainedInit


# --- 7. the global batch follows the GPU count ------------------------------------------------


@pytest.mark.parametrize(
    "world, per_process, scaled", [(1, 32, False), (2, 16, False), (4, 8, False), (3, 11, True)]
)
def test_global_batch_is_split_over_processes(world, per_process, scaled):
    cfg = load_config("seg/boxcaseg_hr48_coco.py")
    line = apply_global_batch(cfg, world)
    assert cfg.train_dataloader.batch_size == per_process
    assert cfg.auto_scale_lr == {"enable": True, "base_batch_size": 32}
    assert f"global 32 over {world} process(es) = {per_process} per process" in line
    assert ("does not divide" in line) == scaled
    if scaled:  # 3 x 11 = 33: lr 0.008 x 33/32
        assert "0.008 x 33/32 = 0.00825" in line
    assert "box samples per global batch 22" in line


@pytest.mark.parametrize("world", [1, 2, 4])
def test_each_rank_takes_its_share_of_the_global_box_count(world):
    from boxcaseg.mm.seg.dataset import KindRatioBatchSampler

    class Data:
        _fully_initialized = True
        sample_kinds = np.array(["box"] * 30 + ["salient"] * 10)
        overlap_flags = np.zeros(40, bool)

    shares = []
    for rank in range(world):

        class Sampler(torch.utils.data.Sampler):
            dataset, seed = Data(), 0

            def __iter__(self):
                return iter(list(range(40)) * 10)

            def __len__(self):
                return 400

        sampler = Sampler()
        sampler.rank, sampler.world_size = rank, world
        batches = KindRatioBatchSampler(sampler, batch_size=32 // world, box_per_batch=22)
        batch = next(iter(batches))
        assert len(batch) == 32 // world
        shares.append(sum(Data.sample_kinds[i] == "box" for i in batch))
    assert sum(shares) == 22 and max(shares) - min(shares) <= 1


def test_batch_sampler_takes_the_runner_seed():
    from boxcaseg.mm.seg.dataset import KindRatioBatchSampler

    class Data:
        _fully_initialized = True
        sample_kinds = np.array(["box"] * 8)
        overlap_flags = np.ones(8, bool)

    def kept(seed):
        class Sampler(torch.utils.data.Sampler):
            dataset = Data()

            def __iter__(self):
                return iter(list(range(8)) * 20)

            def __len__(self):
                return 160

        sampler = Sampler()
        sampler.seed = seed
        return [tuple(b) for b in KindRatioBatchSampler(sampler, 4, overlap_skip_prob=0.5)]

    assert kept(1) == kept(1) and kept(1) != kept(2)


# --- 5, 6. detector configs: from scratch unfrozen; an iteration budget on a 1x config -------------


def test_epoch_schedule_becomes_an_iteration_schedule():
    cfg = load_config("det/maskrcnn_r101_fpn_1x_coco.py", {"train_cfg.max_iters": 1200})
    assert cfg.train_cfg.type == "IterBasedTrainLoop" and cfg.train_cfg.max_iters == 1200
    assert cfg.model.backbone.depth == 101
    step = next(s for s in cfg.param_scheduler if s.type == "MultiStepLR")
    assert not step.by_epoch and step.milestones == [800, 1100] and step.end == 1200
    assert cfg.train_dataloader.sampler.type == "InfiniteSampler"
    assert (
        cfg.default_hooks.checkpoint.by_epoch is False
        and cfg.default_hooks.checkpoint.interval == 100
    )


def test_backbone_from_scratch_detection():
    cfg = load_config("det/maskrcnn_r101_fpn_voc.py")
    assert backbone_from_scratch(cfg.model)
    assert cfg.model.backbone.frozen_stages == 1 and cfg.model.backbone.norm_eval  # mmdet's
    from boxcaseg.sections import detection_options

    with_ckpt = load_config(
        "det/maskrcnn_r101_fpn_voc.py", detection_options({"pretrained": "x.pth"})
    )
    assert not backbone_from_scratch(with_ckpt.model)
    assert with_ckpt.model.backbone.init_cfg == {"type": "CheckedPretrained", "checkpoint": "x.pth"}


def test_voc_detection_config_states_the_papers_global_batch():
    cfg = load_config("det/maskrcnn_r101_fpn_voc.py")
    assert cfg.global_batch_size == 6 and cfg.optim_wrapper.optimizer.lr == 0.0075
    line = apply_global_batch(cfg, 2)
    assert cfg.train_dataloader.batch_size == 3 and "lr 0.0075" in line
    warmup = cfg.param_scheduler[0]
    assert warmup.type == "LinearLR" and warmup.start_factor == pytest.approx(1 / 3)


# --- 9. Stage 3 is built from the checkpoint's own config ------------------------------------------


def test_stage3_model_comes_from_the_checkpoint_config(tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from boxcaseg.mm.seg.model import load_segmentor

    init_default_scope("mmseg")
    cfg = load_config(
        "seg/boxcaseg_hr18s_demo.py", {"model.decode_head.alpha": 0.25, "infer_size": 48}
    )
    torch.manual_seed(0)
    trained = MODELS.build(cfg.model)
    trained.init_weights()
    path = tmp_path / "final.pth"
    torch.save({"state_dict": trained.state_dict(), "meta": {"cfg": cfg.pretty_text}}, path)
    model = load_segmentor(str(path), device="cpu")
    assert model.decode_head.alpha == 0.25  # not the config file's 0.7
    assert model.cfg.infer_size == 48
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(model.salient_logits(x), trained.eval().salient_logits(x), atol=1e-5)


# --- 3. dropped instances keep their box for the detector ----------------------------------------


def test_fully_overwritten_instance_still_trains_the_box_heads(tmp_path):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    from PIL import Image

    from boxcaseg.masks import rle_decode, rle_encode
    from boxcaseg.merge_drop import merge_proxy_file

    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "img.png")
    big, small = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    big[12:20, 12:20] = True  # the large box's proxy: a small blob in its middle ...
    small[10:22, 10:22] = True  # ... entirely covered by the small box's proxy, painted last
    raw = {
        "info": {"image_root": str(tmp_path)},
        "images": [{"id": 1, "file_name": "img.png", "width": 40, "height": 40}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [2, 2, 36, 36],
                "area": 1296.0,
                "iscrowd": 0,
                "segmentation": rle_encode(big),
            },
            {
                "id": 2,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 10, 12, 12],
                "area": 144.0,
                "iscrowd": 0,
                "segmentation": rle_encode(small),
            },
        ],
    }
    merged = merge_proxy_file(raw, drop_threshold=0.95)
    large = merged["annotations"][0]
    assert not rle_decode(large["segmentation"]).any() and large["confidence"] == 0.0
    assert large["area"] == 1296.0  # the box's area: mmdet skips area <= 0
    path = tmp_path / "proxy.json"
    path.write_text(json.dumps(merged))
    init_default_scope("mmdet")
    dataset = DATASETS.build(
        dict(
            type="ConfidenceCocoDataset",
            ann_file=str(path),
            data_prefix=dict(img=str(tmp_path) + "/"),
            metainfo=dict(classes=("thing",)),
            pipeline=[
                dict(type="LoadImageFromFile"),
                dict(type="LoadAnnotationsWithConfidence", with_bbox=True, with_mask=True),
                dict(type="PackDetInputsWithConfidence"),
            ],
        )
    )
    gt = dataset[0]["data_samples"].gt_instances
    assert len(gt) == 2  # both boxes reach the RPN, box and class heads
    assert gt.bboxes.tensor.tolist()[0] == [2.0, 2.0, 38.0, 38.0]
    assert gt.confidences.tolist() == [0.0, 1.0]


# --- the paper's configs run: 2 iterations each, from scratch and from a generated checkpoint ---


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    return subprocess.run(
        [sys.executable, "-m", "boxcaseg.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def _paper_backbone_checkpoint(kind: str, tmp_path: Path) -> Path:
    """HRNetV2-W48 (the paper configs' backbone) in the official ImageNet layout, or
    torchvision's ResNet-101."""
    if kind == "det":
        return torchvision_resnet_checkpoint(tmp_path / "resnet101_torchvision.pth", 101)
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    init_default_scope("mmseg")
    backbone = dict(load_config("seg/boxcaseg_hr48_voc.py").model.backbone)
    backbone["norm_cfg"] = dict(type="BN", requires_grad=True)
    state = {
        k: v
        for k, v in MODELS.build(backbone).state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    state.update(
        {
            "incre_modules.0.0.conv1.weight": torch.zeros(32, 48, 1, 1),
            "classifier.weight": torch.zeros(1000, 2048),
            "classifier.bias": torch.zeros(1000),
        }
    )
    path = tmp_path / "hrnetv2_w48_imagenet.pth"
    torch.save(state, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        "seg/boxcaseg_hr48_voc.py",
        "seg/boxcaseg_hr48_coco.py",
        "det/maskrcnn_r101_fpn_voc.py",
        "det/maskrcnn_r101_fpn_1x_coco.py",
    ],
)
@pytest.mark.parametrize("pretrained", [False, True])
def test_paper_configs_train_two_iterations(config, pretrained, tiny_data, tmp_path):
    kind = config.split("/")[0]
    section: dict = {
        "max_iters": 2,
        "batch_size": 2,
        "num_workers": 0,
        "cfg_options": {"default_hooks.logger.interval": 1},
    }
    if pretrained:
        section["pretrained"] = str(_paper_backbone_checkpoint(kind, tmp_path))
    work = tmp_path / "work"
    if kind == "seg":
        section["box_per_batch"] = 1
        args = ["train-seg", "--salient", str(tiny_data["salient"])]
    else:
        args = ["train-det"]
        section["cfg_options"]["test_dataloader.num_workers"] = 0
    result = _run_cli(
        *args,
        "--config",
        config,
        "--train",
        str(tiny_data["train_gt" if kind == "det" else "train_boxes"]),
        "--work-dir",
        str(work),
        "--checkpoint-out",
        str(tmp_path / "final.pth"),
        "--section",
        json.dumps(section),
    )
    log = result.stdout + result.stderr + "".join(p.read_text() for p in work.glob("*/*.log"))
    assert result.returncode == 0, log[-4000:]
    assert "[boxcaseg] batch: global 2 over 1 process(es) = 2 per process" in log  # item 7
    lr = {
        "seg/boxcaseg_hr48_voc.py": 0.004,
        "seg/boxcaseg_hr48_coco.py": 0.008,
        "det/maskrcnn_r101_fpn_voc.py": 0.0075,
        "det/maskrcnn_r101_fpn_1x_coco.py": 0.02,
    }[config]
    assert f"lr {lr} (stated for global batch 2, unchanged)" in log
    if pretrained:  # item 8: the key report, 100% of the backbone matched
        assert re.search(
            r"pretrained .*\.pth -> (HRNet|ResNet): (\d+) of \2 keys matched \(100%\)", log
        )
        assert (
            "unexpected (not used): classifier.bias, classifier.weight" in log
            if kind == "seg"
            else "fc.bias, fc.weight" in log
        )
    elif kind == "det":  # item 5: a random backbone is not frozen
        assert "frozen_stages=-1 and norm_eval=False" in log
    if config.endswith("1x_coco.py"):  # item 6: an iteration budget on the epoch schedule
        assert "Iter(train) [2/2]" in log
    # what the run changed at start-up is in the log, as a diff from the file as written
    diff = (work / "config_changes.diff").read_text()
    assert "[boxcaseg] what this run changes in" in log and diff.splitlines()[2] in log
    assert any(
        line.startswith("+") and "type='ResumableIterBasedTrainLoop'" in line
        for line in diff.splitlines()
    )
    written_loop = "max_epochs=12" if config.endswith("1x_coco.py") else "type='IterBasedTrainLoop'"
    assert any(line.startswith("-") and written_loop in line for line in diff.splitlines())
    assert (tmp_path / "final.pth").is_file()


@pytest.mark.slow
def test_a_mismatched_checkpoint_stops_the_cli_without_traceback(tiny_data, tmp_path):
    w18 = official_hrnet_checkpoint(tmp_path / "w18.pth", width=18)
    section = {
        "max_iters": 2,
        "batch_size": 2,
        "box_per_batch": 1,
        "num_workers": 0,
        "pretrained": str(w18),
    }
    result = _run_cli(
        *train_seg_args(
            tiny_data, tmp_path / "work", section, config="seg/boxcaseg_hr48_voc.py", val=False
        )
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"pretrained checkpoint {w18} does not fit the HRNet" in result.stderr
    assert "need 90%" in result.stderr
