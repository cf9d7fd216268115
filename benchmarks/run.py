"""BoxCaseg benchmarks: print a table of speed and memory figures and write them as JSON.

    python benchmarks/run.py                       # the default benchmarks (all but scale)
    python benchmarks/run.py --only proxy merge    # some of them
    python benchmarks/run.py --json out.json --demo-results results/demo
    python benchmarks/run.py --help                # every benchmark, with what it measures

Benchmarks are not tests: they assert nothing, they measure. Each one is an entry of the
registry BENCHMARKS (below the benchmark functions): its name, function and description; the
--only choices, the default list and the --help listing all come from there. Runs on the GPU when there is one (CUDA figures then
include peak GPU memory). coco128-seg is read from ../shared/data when present; benchmarks that
need it say so and skip.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COCO128 = Path(os.environ.get("BOXCASEG_COCO128", REPO.parent / "shared/data/coco128-seg"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def cuda_peak_mb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def coco128_or_skip() -> tuple[Path, Path] | None:
    images, labels = COCO128 / "images/train2017", COCO128 / "labels/train2017"
    return (images, labels) if images.is_dir() and labels.is_dir() else None


def tiny_demo(root: Path, **kw: Any) -> dict[str, Path]:
    from boxcaseg.data.prepare import prepare_dataset
    from boxcaseg.data.synthetic import DemoSpec, write_demo_dataset
    from boxcaseg.sections import generated_data_config

    spec = DemoSpec(**{"train_images": 40, "val_images": 4, "salient_images": 40, **kw})
    write_demo_dataset(root / "demo", spec)
    prepare_dataset(generated_data_config(root / "demo"), root / "data")
    return {
        "train_boxes": root / "data/train.boxes.json",
        "train_gt": root / "data/train.gt.json",
        "salient": root / "data/salient.json",
    }


# --- benchmarks ---------------------------------------------------------------------------------


def bench_import(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from boxcaseg.data.yolo_seg import import_yolo_seg

    data = coco128_or_skip()
    if data is None:
        return {"skipped": f"coco128-seg not found at {COCO128}"}
    rows = {}
    for decode in (True, False):
        start = time.perf_counter()
        coco, report = import_yolo_seg(*data, "coco80", decode_images=decode)
        elapsed = time.perf_counter() - start
        rows["decode" if decode else "header_only"] = {
            "images": len(coco["images"]),
            "instances": len(coco["annotations"]),
            "seconds": round(elapsed, 3),
            "images_per_s": round(len(coco["images"]) / elapsed, 1),
        }
    return rows


def bench_proxy(
    tmp: Path,
    batch_size: int = 32,
    input_size: int = 320,
    config: str | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """Stage 3 as it runs (crops read in 2 DataLoader workers, masks pasted, thresholded and
    RLE-encoded), three ways: a batch-1 loop, batched (``batch_size`` crops a forward pass, as
    many as the device's budget allows: see ``proxy_inference.effective_batch_size``), and batched with
    the post-processing in 2 threads; each the best of ``repeats`` interleaved rounds."""
    import torch
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from boxcaseg.data.coco import load_json
    from boxcaseg.engine import load_config
    from boxcaseg.masks import rle_encode_window
    from boxcaseg.proxy_inference import effective_batch_size, iter_proxy_masks

    # the paper's HRNet-W48 on a GPU; on a CPU the demo's W18-small (W48 at 320 px is ~1 s a crop)
    config = config or (
        "seg/boxcaseg_hr48_voc.py" if device() == "cuda" else "seg/boxcaseg_hr18s_demo.py"
    )
    n_images = 40 if device() == "cuda" else 12
    data = tiny_demo(tmp / "proxy", image_size=256, max_object_size=120, train_images=n_images)
    coco = load_json(data["train_boxes"])
    images = {img["id"]: img for img in coco["images"]}
    init_default_scope("mmseg")
    torch.manual_seed(0)
    model = MODELS.build(load_config(config).model).to(device()).eval()
    n = sum(1 for a in coco["annotations"] if not a.get("iscrowd"))
    warm = {**coco, "images": coco["images"][:2]}

    def encode(image_id: int, ann_ids: list[int], window_masks: Any) -> int:
        h, w = images[image_id]["height"], images[image_id]["width"]
        return len([rle_encode_window(m, win, h, w) for win, m in window_masks])

    def timed(bs: int, post_workers: int) -> float:
        kwargs = dict(
            input_size=input_size,
            batch_size=bs,
            num_workers=2,
            post_workers=post_workers,
            windows=True,
            postprocess=encode,
            progress=False,
        )
        list(iter_proxy_masks(model, warm, **kwargs))
        sync()
        start = time.perf_counter()
        assert sum(iter_proxy_masks(model, coco, **kwargs)) == n
        sync()
        return time.perf_counter() - start

    # best of `repeats` rounds, the three ways interleaved, so that a busy moment of the
    # machine does not decide a ratio
    rounds = [(timed(1, 0), timed(batch_size, 0), timed(batch_size, 2)) for _ in range(repeats)]
    single, batched, threaded = (min(times) for times in zip(*rounds))
    return {
        "config": config,
        "input_size": input_size,
        "instances": n,
        "batch_size": batch_size,
        "repeats": repeats,
        "effective_batch_size": effective_batch_size(
            batch_size, input_size, torch.device(device())
        ),
        "batch1_inst_per_s": round(n / single, 2),
        "batched_inst_per_s": round(n / batched, 2),
        "batched_threaded_inst_per_s": round(n / threaded, 2),
        "speedup": round(single / batched, 2),
        "speedup_threaded": round(single / threaded, 2),
        "device": device(),
        "peak_rss_mb": round(peak_rss_mb()),
        "cuda_peak_mb": cuda_peak_mb(),
    }


def bench_merge(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from boxcaseg.data.yolo_seg import import_yolo_seg
    from boxcaseg.masks import rle_encode, segmentation_to_mask
    from boxcaseg.merge_drop import merge_proxy_file

    data = coco128_or_skip()
    if data is None:
        return {"skipped": f"coco128-seg not found at {COCO128}"}
    coco, _ = import_yolo_seg(*data, "coco80", decode_images=False)
    images = {img["id"]: img for img in coco["images"]}
    for ann in coco["annotations"]:  # true masks as RLE stand in for raw proxy masks
        img = images[ann["image_id"]]
        ann["segmentation"] = rle_encode(
            segmentation_to_mask(ann["segmentation"], img["height"], img["width"])
        )
    start = time.perf_counter()
    merged = merge_proxy_file(coco, drop_threshold=0.95)
    elapsed = time.perf_counter() - start
    kept = sum(a["proxy_kept"] for a in merged["annotations"])
    return {
        "images": len(coco["images"]),
        "instances": len(coco["annotations"]),
        "seconds": round(elapsed, 3),
        "images_per_s": round(len(coco["images"]) / elapsed, 1),
        "kept_fraction_of_true_masks": round(kept / len(coco["annotations"]), 3),
    }


def bench_seg_train(
    tmp: Path,
    args: argparse.Namespace,
    iters: int = 20,
    config: str = "seg/boxcaseg_hr18s_demo.py",
) -> dict[str, Any]:
    from mmengine.runner import Runner

    from boxcaseg.engine import load_config

    data = tiny_demo(tmp / "seg")
    cfg = load_config(
        config,
        {
            "train_cfg.max_iters": iters,
            "default_hooks.logger.interval": 1000,
            "default_hooks.checkpoint.interval": 10**6,
            "custom_hooks": [],
        },
    )
    cfg.train_dataloader.dataset.ann_file = str(data["train_boxes"])
    cfg.train_dataloader.dataset.salient_file = str(data["salient"])
    cfg.work_dir = str(tmp / "seg_work")
    runner = Runner.from_cfg(cfg)
    batch_size = cfg.train_dataloader.batch_size
    model, optim = runner.model, runner.build_optim_wrapper(cfg.optim_wrapper)
    loader = runner.build_dataloader(cfg.train_dataloader)
    it = iter(loader)
    batch = next(it)
    for _ in range(3):  # warm-up
        model.train_step(batch, optim)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        model.train_step(batch, optim)
    sync()
    raw = iters / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(iters):
        model.train_step(next(it), optim)
    sync()
    full = iters / (time.perf_counter() - start)
    return {
        "config": config,
        "batch_size": batch_size,
        "raw_fwd_bwd_it_per_s": round(raw, 3),
        "full_pipeline_it_per_s": round(full, 3),
        "overhead_ratio": round(raw / full, 3),
        "num_workers": cfg.train_dataloader.num_workers,
        "device": device(),
        "peak_rss_mb": round(peak_rss_mb()),
        "cuda_peak_mb": cuda_peak_mb(),
    }


def bench_det_train(
    tmp: Path,
    args: argparse.Namespace,
    iters: int = 20,
    config: str = "det/maskrcnn_r18_fpn_demo.py",
) -> dict[str, Any]:
    from mmengine.runner import Runner

    from boxcaseg.detection import dataset_fields
    from boxcaseg.engine import load_config

    data = tiny_demo(tmp / "det")
    cfg = load_config(config, {"train_cfg.max_iters": iters})
    cfg.train_dataloader.dataset.update(dataset_fields(str(data["train_gt"])))
    for head in ("bbox_head", "mask_head"):
        cfg.model.roi_head[head].num_classes = 4
    cfg.work_dir = str(tmp / "det_work")
    runner = Runner.from_cfg(cfg)
    model, optim = runner.model, runner.build_optim_wrapper(cfg.optim_wrapper)
    it = iter(runner.build_dataloader(cfg.train_dataloader))
    for _ in range(3):
        model.train_step(next(it), optim)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        model.train_step(next(it), optim)
    sync()
    elapsed = time.perf_counter() - start
    bs = cfg.train_dataloader.batch_size
    return {
        "config": config,
        "batch_size": bs,
        "it_per_s": round(iters / elapsed, 3),
        "images_per_s": round(iters * bs / elapsed, 2),
        "device": device(),
        "peak_rss_mb": round(peak_rss_mb()),
        "cuda_peak_mb": cuda_peak_mb(),
    }


# the layouts and thread counts stage_speed compares: what ran before (NCHW, one thread per
# job), the same on channels_last, and channels_last on both cores (a job that runs alone)
SPEED_SETTINGS = (("nchw", 1), ("channels_last", 1), ("channels_last", 2))
# conv and matmul kernels: the share of a step a faster kernel (or layout) can speed up
MATMUL_OPS = ("convolution", "mkldnn", "conv2d", "addmm", "aten::mm", "aten::bmm", "linear")


def matmul_share(step: Callable[[], Any], steps: int = 3) -> float:
    """The share of a training step's CPU time spent in convolution / matmul kernels (torch's
    profiler, self time): the part a faster layout or kernel can speed up, the rest (RoIAlign,
    NMS, data handling, small element-wise ops) it cannot."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    heavy = sum(e.self_cpu_time_total for e in events if any(k in e.key for k in MATMUL_OPS))
    return round(heavy / max(total, 1), 3)


def _interleaved(
    variants: dict[str, tuple[int, Callable[[], Callable[[], Any]]]],
    iters: int,
    rounds: int,
    per_step: int,
) -> dict[str, Any]:
    """Seconds per step of each variant (name -> (threads, prepare); ``prepare()`` returns the
    step), rounds interleaved in this one process (a slower or busier moment hits every
    variant), the median of the rounds; items/s and the ratio to the first variant."""
    import statistics

    import torch

    times: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, (threads, prepare) in variants.items():
            torch.set_num_threads(threads)
            step = prepare()
            step()  # warm-up: oneDNN primitives for this layout
            start = time.perf_counter()
            for _ in range(iters):
                step()
            times.setdefault(name, []).append((time.perf_counter() - start) / iters)
    base = statistics.median(next(iter(times.values())))
    rows = {}
    for name, values in times.items():
        s = statistics.median(values)
        rows[name] = {
            "s_per_step": round(s, 4),
            "items_per_s": round(per_step / s, 2),
            "speedup": round(base / s, 2),
        }
    return rows


def _side_by_side(
    prepare: Callable[[str], Callable[[], Any]], iters: int, rounds: int, per_step: int
) -> dict[str, Any]:
    """``prepare(layout)()`` for every (layout, threads) of SPEED_SETTINGS: :func:`_interleaved`."""
    variants = {
        f"{layout}_{threads}t": (threads, functools.partial(prepare, layout))
        for layout, threads in SPEED_SETTINGS
    }
    return _interleaved(variants, iters, rounds, per_step)


def _set_layout(model: Any, layout: str) -> None:
    import torch

    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    getattr(model, "module", model).to(memory_format=fmt)


def _train_step_runner(cfg: Any) -> tuple[Any, Any, Any]:
    """model, optimizer wrapper and an endless iterator over the config's own data loader."""
    from mmengine.logging import MessageHub
    from mmengine.runner import Runner

    runner = Runner.from_cfg(cfg)
    runner._init_model_weights()  # the packaged ImageNet weights, as training starts
    optim = runner.build_optim_wrapper(cfg.optim_wrapper)
    loader = runner.build_dataloader(cfg.train_dataloader)
    MessageHub.get_current_instance().update_info("iter", 1000)  # BoxInst's pairwise ramp

    def batches() -> Any:
        while True:
            yield from loader

    return runner.model, optim, batches()


def _detector_train_runner(config: str, data: dict[str, Path], tmp: Path) -> tuple[Any, Any]:
    """A Stage 5 config on ``tiny_demo`` data (BoxInst on the boxes, Mask R-CNN on the true
    masks) and its :func:`_train_step_runner`."""
    from boxcaseg.detection import _set_num_classes, dataset_fields
    from boxcaseg.engine import load_config

    cfg = load_config(config, {"train_dataloader.persistent_workers": True})
    fields = dataset_fields(str(data["train_boxes"] if "boxinst" in config else data["train_gt"]))
    cfg.train_dataloader.dataset.update(fields)
    _set_num_classes(cfg.model, len(fields["metainfo"]["classes"]))
    cfg.work_dir = str(tmp / "work" / Path(config).stem)
    return cfg, _train_step_runner(cfg)


def bench_stage_speed(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Each stage on the configs that run (the Lite0 demo and real-photo recipes), NCHW on one
    thread (before) against channels_last on one and two threads, side by side in this process:
    Stage 2 training iterations/s through its real data pipeline, Stage 3 instances/s at the
    model's own input size, Stage 5 training images/s (Mask R-CNN, BoxInst), and the share of
    each training step in conv / matmul kernels."""
    import torch

    import boxcaseg.mm  # noqa: F401
    from boxcaseg.engine import load_config

    data = tiny_demo(tmp / "data", train_images=60)
    iters, rounds = args.speed_iters, args.speed_rounds
    result: dict[str, Any] = {"threads_available": os.cpu_count(), "rounds": rounds}
    for config in ("seg/boxcaseg_lite0_demo.py", "seg/boxcaseg_lite0_real_cpu.py"):
        cfg = load_config(config, {"custom_hooks": [], "train_dataloader.persistent_workers": True})
        cfg.train_dataloader.dataset.ann_file = str(data["train_boxes"])
        cfg.train_dataloader.dataset.salient_file = str(data["salient"])
        cfg.work_dir = str(tmp / "work" / Path(config).stem)
        model, optim, batches = _train_step_runner(cfg)

        def prepare(layout: str, model: Any = model, optim: Any = optim, batches: Any = batches):
            _set_layout(model, layout)
            return lambda: model.train_step(next(batches), optim)

        rows = _side_by_side(prepare, iters, rounds, per_step=cfg.train_dataloader.batch_size)
        torch.set_num_threads(1)
        rows["matmul_share_channels_last_1t"] = matmul_share(prepare("channels_last"))
        result[f"stage2_train {config}"] = rows
        result[f"stage3_infer {config}"] = _stage3_speed(model, cfg, iters, rounds)
        del model, optim, batches
    for config in (
        "det/maskrcnn_lite0_fpn_demo.py",
        "det/maskrcnn_lite0_fpn_real_cpu.py",
        "det/boxinst_lite0_fpn_demo.py",
        "det/boxinst_lite0_fpn_real_cpu.py",
    ):
        cfg, (model, optim, batches) = _detector_train_runner(config, data, tmp)

        def prepare(layout: str, model: Any = model, optim: Any = optim, batches: Any = batches):
            _set_layout(model, layout)
            return lambda: model.train_step(next(batches), optim)

        rows = _side_by_side(prepare, iters, rounds, per_step=cfg.train_dataloader.batch_size)
        torch.set_num_threads(1)
        rows["matmul_share_channels_last_1t"] = matmul_share(prepare("channels_last"))
        result[f"stage5_train {config}"] = rows
        del model, optim, batches
    return result


# the profiler events of RoI pooling and NMS, before (mmcv's and torchvision's RoIAlign, mmcv's NMSop)
# and now (GatherRoIAlign's autograd function, block_nms's record_function): their total
# times, children included, each event outside the others (torchvision's backward kernel is
# not recorded under its autograd node)
ROI_EVENTS = (
    "RoIAlignFunction",  # mmcv's (NCHW only)
    "RoIAlignFunctionBackward",
    "torchvision::roi_align",
    "GeneratedBackwardFor_torchvision_roi_align_default",
    "torchvision::_roi_align_backward",
    "_GatherRoIAlignFunction",
    "_GatherRoIAlignFunctionBackward",
)
NMS_EVENTS = ("NMSop", "block_nms")


def kernel_ms_per_step(step: Callable[[], Any], steps: int = 5) -> dict[str, float]:
    """CPU milliseconds a step spends in all ops (self times summed), in RoI pooling and in
    NMS (their events' totals): torch's profiler, steadier than wall time on a shared machine."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()

    def ms(value: float) -> float:
        return round(value / 1e3 / steps, 1)

    return {
        "cpu": ms(sum(e.self_cpu_time_total for e in events)),
        "roi": ms(sum(e.cpu_time_total for e in events if e.key in ROI_EVENTS)),
        "nms": ms(sum(e.cpu_time_total for e in events if e.key in NMS_EVENTS)),
    }


def bench_det_kernels(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Mask R-CNN training steps of the Lite0 configs (their real data pipeline) as they ran
    when issue #36 was filed (NCHW, mmcv's RoIAlign and NMS), with the channels_last layout
    alone (torchvision's roi_align, mmcv's NMS), with GatherRoIAlign, and with GatherRoIAlign
    and block_nms (what they state now: the layout's results, bit for bit), on one and two
    threads, interleaved in this process; and the CPU milliseconds of a step in all ops, in
    RoI pooling and in NMS (torch's profiler)."""
    import torch

    import boxcaseg.mm  # noqa: F401
    from boxcaseg.mm.det.roi_align import as_mmcv_roi_align

    data = tiny_demo(tmp / "data", train_images=60)
    iters, rounds = args.speed_iters, args.speed_rounds
    result: dict[str, Any] = {"threads_available": os.cpu_count(), "rounds": rounds}
    for config in ("det/maskrcnn_lite0_fpn_demo.py", "det/maskrcnn_lite0_fpn_real_cpu.py"):
        cfg, (model, optim, batches) = _detector_train_runner(config, data, tmp)
        extractors = (model.roi_head.bbox_roi_extractor, model.roi_head.mask_roi_extractor)
        gather = [e.roi_layers for e in extractors]
        torchvision = [as_mmcv_roi_align(layers) for layers in gather]
        mmcv_roi_align = [as_mmcv_roi_align(layers, use_torchvision=False) for layers in gather]
        block_nms = dict(model.train_cfg.rpn_proposal.nms)
        mmcv_nms = {"type": "nms", "iou_threshold": block_nms["iou_threshold"]}
        kernels = {  # name: (layout, RoI layers, RPN NMS)
            "issue_36": ("nchw", mmcv_roi_align, mmcv_nms),  # when issue #36 was filed
            "before": ("channels_last", torchvision, mmcv_nms),  # the layout alone
            "gather_roi_align": ("channels_last", gather, mmcv_nms),
            "now": ("channels_last", gather, block_nms),
        }

        def prepare(
            name: str,
            model: Any = model,
            optim: Any = optim,
            batches: Any = batches,
            extractors: Any = extractors,
            kernels: Any = kernels,
        ):
            layout, layers, nms_cfg = kernels[name]
            _set_layout(model, layout)
            for extractor, roi_layers in zip(extractors, layers, strict=True):
                extractor.roi_layers = roi_layers
            model.train_cfg.rpn_proposal.nms = nms_cfg
            return lambda: model.train_step(next(batches), optim)

        variants = {
            f"{name}_{threads}t": (threads, functools.partial(prepare, name))
            for threads in (1, 2)
            for name in kernels
        }
        rows = _interleaved(variants, iters, rounds, per_step=cfg.train_dataloader.batch_size)
        torch.set_num_threads(1)
        for _ in range(2):  # two interleaved profiles each
            for name in kernels:
                for part, ms in kernel_ms_per_step(prepare(name)).items():
                    rows.setdefault(f"{part}_ms_per_step_{name}_1t", []).append(ms)
        result[f"stage5_train {config}"] = rows
        del model, optim, batches
    return result


def _stage3_speed(model: Any, cfg: Any, iters: int, rounds: int) -> dict[str, Any]:
    """Stage 3's forward (salient logits of a batch of crops, as iter_proxy_masks feeds it) at
    the model's own input size and the CPU batch cap, instances/s per setting."""
    import torch

    from boxcaseg.proxy_inference import CPU_BATCH_PIXELS, predict_batch

    size = int(cfg.get("infer_size") or cfg.model.data_preprocessor.size[0])
    batch = max(1, min(32, CPU_BATCH_PIXELS // (size * size)))
    crops = torch.randint(0, 255, (batch, size, size, 3), dtype=torch.uint8)
    model.eval()

    def prepare(layout: str) -> Callable[[], Any]:
        _set_layout(model, layout)
        return lambda: predict_batch(model, crops)

    rows = _side_by_side(prepare, iters, rounds, per_step=batch)
    rows["input_size"], rows["batch"] = size, batch
    # the batch size (crops a forward pass) on channels_last, one thread: what the cap chose
    torch.set_num_threads(1)
    _set_layout(model, "channels_last")
    by_batch = {}
    for n in sorted({1, 4, batch, 32}):
        some = crops[:1].expand(n, -1, -1, -1).contiguous()
        predict_batch(model, some)
        start = time.perf_counter()
        for _ in range(iters):
            predict_batch(model, some)
        by_batch[n] = round(n * iters / (time.perf_counter() - start), 1)
    rows["channels_last_1t_instances_per_s_by_batch"] = by_batch
    model.train()
    return rows


def bench_proxy_sizes(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`bench_proxy` at 64 and 320 px crops."""
    return {
        f"input_{size}": bench_proxy(
            tmp / str(size), batch_size=args.proxy_batch_size, input_size=size
        )
        for size in (64, 320)
    }


def bench_demo_dag(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    results = Path(args.demo_results)
    files = sorted((results / "benchmarks").glob("*.tsv"))
    if not files:
        return {
            "skipped": f"no Snakemake benchmark files under {results}/benchmarks (run `make demo`)"
        }
    stages = {}
    for path in files:
        header, values = path.read_text().splitlines()[:2]
        row = dict(zip(header.split("\t"), values.split("\t")))
        stages[path.stem] = {
            "seconds": round(float(row["s"]), 1),
            "max_rss_mb": round(float(row["max_rss"])) if row["max_rss"] != "NA" else None,
        }
    return {
        "stages": stages,
        "sum_of_stage_seconds": round(sum(s["seconds"] for s in stages.values()), 1),
    }


def bench_scale_stages(tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    from scale import bench_scale  # benchmarks/scale.py, beside this script

    return bench_scale(tmp, args.scale_fractions, args.scale_data, args.scale_input_size)


# --- the registry -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Benchmark:
    run: Callable[[Path, argparse.Namespace], dict[str, Any]]  # (a temporary folder, the args)
    description: str
    default: bool = True  # in the list a plain `python benchmarks/run.py` runs


BENCHMARKS: dict[str, Benchmark] = {
    "import": Benchmark(
        bench_import,
        "Stage 1 import + validation speed on ../shared/data/coco128-seg (images/s)",
    ),
    "proxy": Benchmark(
        bench_proxy_sizes,
        "Stage 3 inference at 64 and 320 px, batched vs a batch-1 per-instance loop, same "
        "model and boxes (instances/s each, and the ratio)",
    ),
    "merge": Benchmark(
        bench_merge, "Stage 4 merge + drop + RLE on coco128-seg's true masks (images/s)"
    ),
    "seg_train": Benchmark(
        bench_seg_train,
        "Stage 2 training: iterations/s through the full data pipeline (dataloader, crops, "
        "sampler) vs the raw model forward+backward on the same batch size (the pipeline's "
        "overhead ratio), peak memory",
    ),
    "det_train": Benchmark(
        bench_det_train, "Stage 5 Mask R-CNN training images/s (demo config), peak memory"
    ),
    "stage_speed": Benchmark(
        bench_stage_speed,
        "every stage on the configs that run (Lite0 demo and real-photo recipes): NCHW on one "
        "thread (before) against channels_last on one and two threads, side by side in one "
        "process; Stage 2 training it/s through its data pipeline, Stage 3 instances/s at the "
        "model's input size, Stage 5 Mask R-CNN and BoxInst training images/s, the conv/matmul "
        "share of each step. NOT in the default list (about 10 minutes): `--only stage_speed`",
        default=False,
    ),
    "det_kernels": Benchmark(
        bench_det_kernels,
        "Stage 5 Mask R-CNN training images/s on the Lite0 configs as they ran when issue #36 "
        "was filed (NCHW, mmcv's RoIAlign and NMS), with the channels_last layout alone, and "
        "with GatherRoIAlign and block_nms (now: the layout's results, bit for bit), one and "
        "two threads, side by side in one process, and each step's CPU ms in all ops, RoI "
        "pooling and NMS. NOT in the default list (about 10 minutes): `--only det_kernels`",
        default=False,
    ),
    "demo_dag": Benchmark(
        bench_demo_dag,
        "per-stage wall time and peak RSS of a finished demo run (its Snakemake benchmark "
        "files), and the DAG's total",
    ),
    "scale": Benchmark(
        bench_scale_stages,
        "every data stage at COCO scale (synthetic: 118k images, 860k instances) and at 10% of "
        "it, each stage in its own process: wall time, peak RSS, linear extrapolation "
        "(benchmarks/scale.py). NOT in the default list: about 15 minutes on 2 cores and 3 GB "
        "of disk; run it with `--only scale`",
        default=False,
    ),
}


def benchmark_list() -> str:
    """The registry as the --help listing."""
    lines = ["benchmarks (--only NAME ...; * = not in the default list):"]
    for name, bench in BENCHMARKS.items():
        lines.append(
            textwrap.fill(
                bench.description,
                width=96,
                initial_indent=f"  {name + ('*' if not bench.default else ''):<11}",
                subsequent_indent=" " * 13,
            )
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=benchmark_list(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help="the benchmarks to run (listed below; default: all but those marked *)",
    )
    parser.add_argument("--json", default="benchmark_results.json")
    parser.add_argument("--demo-results", default=str(REPO / "results/demo"))
    parser.add_argument("--proxy-batch-size", type=int, default=32)
    parser.add_argument("--speed-iters", type=int, default=6, help="stage_speed: steps a setting")
    parser.add_argument("--speed-rounds", type=int, default=3, help="stage_speed: rounds")
    parser.add_argument(
        "--scale-fractions",
        type=float,
        nargs="+",
        default=[0.1, 1.0],
        help="scale: sizes to run, as fractions of COCO train2017",
    )
    parser.add_argument(
        "--scale-data",
        help="scale: keep the generated data sets here (and "
        "reuse them next time) instead of a temporary folder",
    )
    parser.add_argument(
        "--scale-input-size",
        type=int,
        default=64,
        help="scale: Stage 3 crop size (the stub model's; the data path's cost "
        "per crop grows with it)",
    )
    args = parser.parse_args()
    names = args.only or [name for name, bench in BENCHMARKS.items() if bench.default]
    results: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "device": None}
    }
    if len(names) > 1:  # one process per benchmark: each peak memory figure is its own
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:
                part = Path(tmp) / f"{name}.json"
                subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--only",
                        name,
                        "--json",
                        str(part),
                        "--demo-results",
                        args.demo_results,
                        "--proxy-batch-size",
                        str(args.proxy_batch_size),
                        "--speed-iters",
                        str(args.speed_iters),
                        "--speed-rounds",
                        str(args.speed_rounds),
                        "--scale-fractions",
                        *map(str, args.scale_fractions),
                        "--scale-input-size",
                        str(args.scale_input_size),
                        *(["--scale-data", args.scale_data] if args.scale_data else []),
                    ],
                    check=True,
                )
                results[name] = json.loads(part.read_text())[name]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            name = names[0]
            print(f"== {name}", flush=True)
            start = time.perf_counter()
            out = BENCHMARKS[name].run(Path(tmp), args)
            out["bench_seconds"] = round(time.perf_counter() - start, 1)
            results[name] = out
            print(json.dumps(out, indent=1), flush=True)
    results["machine"]["device"] = device()
    Path(args.json).write_text(json.dumps(results, indent=1))
    print("\n" + summary_table(results))
    print(f"\nwritten to {args.json}")
    return 0


def summary_table(results: dict[str, Any]) -> str:
    """The headline figures of whatever ran, one line each."""
    rows: list[tuple[str, str]] = [
        ("device", f"{results['machine']['device']}, {results['machine']['cpus']} CPUs")
    ]

    def add(name: str, key: str, label: str, unit: str = "") -> None:
        bench = results.get(name) or {}
        if "skipped" in bench:
            rows.append((f"{name}", f"skipped: {bench['skipped']}"))
        elif key in bench:
            rows.append((label, f"{bench[key]}{unit}"))

    imp = results.get("import") or {}
    if "decode" in imp:
        rows.append(
            (
                "Stage 1 import + validation, coco128-seg (full decode)",
                f"{imp['decode']['images_per_s']} images/s",
            )
        )
    elif "skipped" in imp:
        rows.append(("import", f"skipped: {imp['skipped']}"))
    for key, bench in (results.get("proxy") or {}).items():
        if key.startswith("input_"):
            size = key.split("_")[1]
            rows.append(
                (f"Stage 3 at {size} px, batch-1 loop", f"{bench['batch1_inst_per_s']} instances/s")
            )
            rows.append(
                (
                    f"Stage 3 at {size} px, batched ({bench['batch_size']}, "
                    f"{bench['effective_batch_size']} a pass here)",
                    f"{bench['batched_inst_per_s']} instances/s ({bench['speedup']}x)",
                )
            )
            rows.append(
                (
                    f"Stage 3 at {size} px, batched + 2 post-processing threads",
                    f"{bench['batched_threaded_inst_per_s']} instances/s "
                    f"({bench['speedup_threaded']}x)",
                )
            )
    add("merge", "images_per_s", "Stage 4 merge + drop + RLE, coco128-seg", " images/s")
    add("seg_train", "full_pipeline_it_per_s", "Stage 2 training, full data pipeline", " it/s")
    add("seg_train", "raw_fwd_bwd_it_per_s", "Stage 2 training, raw forward+backward", " it/s")
    add("seg_train", "overhead_ratio", "Stage 2 pipeline overhead (raw / full)", "x")
    add("seg_train", "peak_rss_mb", "Stage 2 training peak RSS", " MB")
    add("det_train", "images_per_s", "Stage 5 Mask R-CNN training", " images/s")
    add("det_train", "peak_rss_mb", "Stage 5 training peak RSS", " MB")
    dag = results.get("demo_dag") or {}
    if "stages" in dag:
        rows.append(("demo DAG, sum of stage wall times", f"{dag['sum_of_stage_seconds']} s"))
        for stage, fig in dag["stages"].items():
            rows.append((f"  {stage}", f"{fig['seconds']} s, peak RSS {fig['max_rss_mb']} MB"))
    elif "skipped" in dag:
        rows.append(("demo_dag", f"skipped: {dag['skipped']}"))
    for name in ("stage_speed", "det_kernels"):  # side-by-side variants: items/s (ratio)
        for key, variants in (results.get(name) or {}).items():
            if isinstance(variants, dict):
                for variant, fig in variants.items():
                    if isinstance(fig, dict) and "items_per_s" in fig:
                        rows.append(
                            (f"{key}, {variant}", f"{fig['items_per_s']}/s ({fig['speedup']}x)")
                        )
    width = max(len(r[0]) for r in rows)
    table = "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
    if "scale" in results:
        from scale import scale_table  # benchmarks/scale.py, beside this script

        table += "\n\nCOCO scale, each stage in its own process:\n" + scale_table(results["scale"])
    return table


if __name__ == "__main__":
    sys.exit(main())
