"""The GPU check (issue #36): the paper-scale GPU paths, trained and timed for a few dozen
iterations, for the first GPU machine this project runs on.

    bash scripts/gpu_check.sh                          # on a GPU machine
    bash scripts/gpu_check.sh --out gpu_check.json
    bash scripts/gpu_check.sh --tiny --out tiny.json   # the same code path at toy sizes (CPU test)

Parts, each through the workflow's own code (``boxcaseg.segmentation.train_segmentation``,
``boxcaseg.detection.train_detection``, ``boxcaseg.proxy_inference.iter_proxy_masks`` on the model
loaded from the Stage 2 checkpoint by ``load_segmentor``) with the config section translated
by ``boxcaseg.sections`` as the workflow translates it:

- ``stage2_train_fp32`` / ``stage2_train_amp``: Stage 2, ``seg/boxcaseg_hr48_coco.py``
  (HRNet-W48, its 288 px training crops, its global batch of 32 = 22 box + 10 salient on one
  process), with and without mmengine's AmpOptimWrapper (``boxcaseg.engine.apply_precision``);
- ``stage5_train_fp32`` / ``stage5_train_amp``: Stage 5, ``det/maskrcnn_r50_fpn_1x_coco.py``
  (Mask R-CNN R-50-FPN at 1333 x 800, its global batch of 16), with and without AMP;
- ``stage3_proxy_fp32`` / ``stage3_proxy_fp16``: Stage 3 batched over the train boxes at the
  model's 320 px (crops read in DataLoader workers, pasted and RLE-encoded in a thread, as the
  workflow runs it), and the forward pass alone on one staged batch (``predict_batch``).

Each training part reports iterations/s and images/s (Stage 2: crops) over the iterations
after a warm-up (from the times mmengine's IterTimerHook records, data loading included:
``data_time_fraction`` is the share of it spent waiting for data), and every part the peak GPU
memory (``torch.cuda.max_memory_allocated``, reset before each part). Weights are random (no
pretrained checkpoint is needed for speed); the data are the project's synthetic scenes at
800 px, generated into a temporary folder. A failing part is recorded with its error, the
others still run, and the exit status is 1.

Without a GPU it says so and exits 0, unless ``--tiny``: 64 px images, 2 iterations, small
crops, proposal counts and batches (cfg_options), the same parts and JSON keys; on a CPU the
AMP and fp16 parts are recorded as skipped (AmpOptimWrapper and fp16 inference are GPU paths).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks/results/gpu_check.json"
SEG_CONFIG = "seg/boxcaseg_hr48_coco.py"
DET_CONFIG = "det/maskrcnn_r50_fpn_1x_coco.py"
PARTS = (
    "stage2_train_fp32",
    "stage2_train_amp",
    "stage5_train_fp32",
    "stage5_train_amp",
    "stage3_proxy_fp32",
    "stage3_proxy_fp16",
)
NO_GPU = (
    "gpu_check: no GPU here (torch.cuda.is_available() is False): nothing checked. Run it on "
    "a GPU machine; --tiny runs the same code path on the CPU at toy sizes."
)


@dataclass(frozen=True)
class Sizes:
    """How big each part is. ``seg`` / ``det``: extra entries of the workflow's config section
    (``max_iters``, ``batch_size``, ``num_workers``, ...; None keeps the model config's)."""

    image_size: int
    train_images: int
    salient_images: int
    min_object_size: int
    max_object_size: int
    max_objects: int
    seg_iters: int
    det_iters: int
    warmup: int  # iterations left out of the rates (start-up, cudnn autotuning, allocator)
    proxy_repeats: int  # Stage 3 goes over the train images this many times
    proxy_batch_size: int
    proxy_workers: int
    forward_passes: int  # Stage 3's forward alone: passes over one staged batch
    seg: dict[str, Any] = field(default_factory=dict)
    det: dict[str, Any] = field(default_factory=dict)
    seg_crop: dict[str, Any] = field(default_factory=dict)  # BoxCasegCrop keys
    det_scale: tuple[int, int] | None = None  # the train pipeline's Resize scale
    seg_cfg: dict[str, Any] = field(default_factory=dict)
    det_cfg: dict[str, Any] = field(default_factory=dict)


# The configs' own crops, scales, batches and workers; data sized for them: 800 px scenes (the
# 1333 x 800 Resize keeps them at 800 x 800), objects from 60 to 360 px.
FULL = Sizes(
    image_size=800,
    train_images=24,
    salient_images=24,
    min_object_size=60,
    max_object_size=360,
    max_objects=8,
    seg_iters=40,
    det_iters=30,
    warmup=10,
    proxy_repeats=16,
    proxy_batch_size=64,  # config/slurm_coco.yaml's proxy.batch_size
    proxy_workers=4,
    forward_passes=20,
)

# Toy sizes for the CPU test: every size the parts depend on shrunk by cfg_options.
TINY = Sizes(
    image_size=64,
    train_images=4,
    salient_images=4,
    min_object_size=14,
    max_object_size=30,
    max_objects=4,
    seg_iters=2,
    det_iters=2,
    warmup=1,
    proxy_repeats=1,
    proxy_batch_size=8,
    proxy_workers=0,
    forward_passes=2,
    seg={"batch_size": 2, "box_per_batch": 1, "num_workers": 0},
    det={"batch_size": 2, "num_workers": 0},
    seg_crop={"crop_size": 64, "salient_resize": 72},
    det_scale=(64, 64),
    seg_cfg={"model.data_preprocessor.size": (64, 64), "infer_size": 64},
    det_cfg={
        "model.train_cfg.rpn_proposal.nms_pre": 200,
        "model.train_cfg.rpn_proposal.max_per_img": 100,
        "model.train_cfg.rcnn.sampler.num": 64,
    },
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", help=f"JSON results (default {DEFAULT_OUT.relative_to(REPO)}; --tiny: stdout only)"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="toy sizes, on the CPU when there is no GPU"
    )
    parser.add_argument(
        "--amp", default="float16", choices=["float16", "bfloat16"], help="the AMP parts' dtype"
    )
    args = parser.parse_args(argv)

    from boxcaseg.numerics import pin_cpu_numerics

    pin_cpu_numerics()  # as the `boxcaseg` command does, before torch loads
    import torch

    if not torch.cuda.is_available() and not args.tiny:
        print(NO_GPU, flush=True)
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="boxcaseg-gpu-check-") as tmp:
        results = run_check(Path(tmp), TINY if args.tiny else FULL, args.amp)
    results["mode"] = "tiny" if args.tiny else "full"
    results["seconds"] = round(time.perf_counter() - start, 1)
    out = args.out or (None if args.tiny else DEFAULT_OUT)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(results, indent=1) + "\n")
    print("\n" + results_table(results), flush=True)
    if out:
        print(f"\nwritten to {out}", flush=True)
    if results["failed"]:
        print(f"FAILED: {', '.join(results['failed'])}", file=sys.stderr, flush=True)
        return 1
    return 0


def run_check(tmp: Path, sizes: Sizes, amp: str) -> dict[str, Any]:
    """Every part in order (Stage 3 needs the Stage 2 fp32 run's checkpoint); a part that
    raises is recorded with its error and the others go on."""
    import torch

    cuda = torch.cuda.is_available()
    data = make_data(tmp / "data", sizes)
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if cuda else f"cpu, no GPU ({platform.machine()})",
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,  # the CUDA torch was built for
        "gpu": cuda,
        "cpus": os.cpu_count(),
        "amp_dtype": amp,
        "configs": {"stage2": SEG_CONFIG, "stage5": DET_CONFIG},
        "data": data["summary"],
        "parts": {},
    }
    no_amp = "no GPU: AmpOptimWrapper trains on CUDA only"
    no_fp16 = "no GPU: fp16 autocast inference is a GPU setting"
    seg_work = tmp / "stage2_fp32"
    plan: list[tuple[str, Callable[[], dict[str, Any]] | str]] = [
        ("stage2_train_fp32", lambda: train_part("seg", data, sizes, seg_work, None)),
        (
            "stage2_train_amp",
            (lambda: train_part("seg", data, sizes, tmp / "stage2_amp", amp)) if cuda else no_amp,
        ),
        ("stage5_train_fp32", lambda: train_part("det", data, sizes, tmp / "stage5_fp32", None)),
        (
            "stage5_train_amp",
            (lambda: train_part("det", data, sizes, tmp / "stage5_amp", amp)) if cuda else no_amp,
        ),
        ("stage3_proxy_fp32", lambda: proxy_part(seg_work, data, sizes, "fp32")),
        (
            "stage3_proxy_fp16",
            (lambda: proxy_part(seg_work, data, sizes, "fp16")) if cuda else no_fp16,
        ),
    ]
    cudnn_benchmark = torch.backends.cudnn.benchmark
    for name, part in plan:
        print(f"\n== gpu_check: {name}", flush=True)
        if isinstance(part, str):
            results["parts"][name] = {"skipped": part}
            continue
        # as in a process of its own: mmseg's runtime turns cudnn.benchmark on and mmengine
        # never turns it off, so Stage 5 would inherit Stage 2's setting
        torch.backends.cudnn.benchmark = cudnn_benchmark
        at_start = reset_gpu_memory()
        start = time.perf_counter()
        try:
            figures = part()
        except Exception as err:  # noqa: BLE001 - the check reports every part's failure
            traceback.print_exc()
            figures = {"error": f"{type(err).__name__}: {err}"}
        figures["seconds"] = round(time.perf_counter() - start, 1)
        figures["peak_gpu_mb"] = peak_gpu_mb()
        # what an earlier part left allocated (counted in the peak): 0 when nothing leaked
        figures["gpu_mb_at_start"] = at_start
        results["parts"][name] = figures
    results["failed"] = [n for n, p in results["parts"].items() if "error" in p]
    return results


def make_data(root: Path, sizes: Sizes) -> dict[str, Any]:
    """The project's synthetic scenes and salient images, through Stage 1 (as
    benchmarks/run.py's ``tiny_demo``)."""
    from boxcaseg.data.coco import load_json
    from boxcaseg.data.prepare import prepare_dataset
    from boxcaseg.data.synthetic import DemoSpec, write_demo_dataset
    from boxcaseg.sections import generated_data_config

    start = time.perf_counter()
    spec = DemoSpec(
        image_size=sizes.image_size,
        train_images=sizes.train_images,
        val_images=1,
        salient_images=sizes.salient_images,
        max_objects=sizes.max_objects,
        min_object_size=sizes.min_object_size,
        max_object_size=sizes.max_object_size,
    )
    write_demo_dataset(root / "demo", spec)
    prepare_dataset(generated_data_config(root / "demo"), root / "prepared")
    files = {
        "train_boxes": root / "prepared/train.boxes.json",
        "train_gt": root / "prepared/train.gt.json",
        "salient": root / "prepared/salient.json",
    }
    boxes = load_json(files["train_boxes"])
    summary = {
        "image_size": sizes.image_size,
        "train_images": len(boxes["images"]),
        "train_instances": sum(1 for a in boxes["annotations"] if not a.get("iscrowd")),
        "salient_images": sizes.salient_images,
        "seconds": round(time.perf_counter() - start, 1),
    }
    return {**files, "summary": summary}


def train_part(
    kind: str, data: dict[str, Any], sizes: Sizes, work_dir: Path, amp: str | None
) -> dict[str, Any]:
    """One Stage 2 (``kind`` 'seg') or Stage 5 ('det') training through the workflow's train
    function, timed from the runner's iteration log."""
    from boxcaseg.detection import train_detection
    from boxcaseg.segmentation import train_segmentation

    seg = kind == "seg"
    # Stage 3 reads the fp32 Stage 2 run's checkpoint; the other runs need none
    config, iters, cfg_options = training_options(kind, sizes, save_checkpoint=seg and not amp)
    if seg:
        runner = train_segmentation(
            config,
            work_dir,
            train_ann=str(data["train_boxes"]),
            salient_file=str(data["salient"]),
            cfg_options=cfg_options,
            amp=amp,
        )
    else:
        runner = train_detection(
            config,
            work_dir,
            train_ann=str(data["train_gt"]),
            cfg_options=cfg_options,
            amp=amp,
        )
    hub = runner.message_hub
    rates = iteration_rates(
        list(hub.get_scalar("train/time").data[0]),
        list(hub.get_scalar("train/data_time").data[0]),
        sizes.warmup,
    )
    batch = int(runner.cfg.train_dataloader.batch_size)
    workers = int(runner.cfg.train_dataloader.num_workers)
    wrapper = type(runner.optim_wrapper).__name__
    del runner  # the model, optimiser state and loader workers go before the next part
    return {
        "config": config,
        "optim_wrapper": wrapper,
        "precision": f"amp {amp}" if amp else "fp32",
        "batch_size": batch,
        "num_workers": workers,
        "iters": iters,
        **rates,
        "images_per_s": round(rates["it_per_s"] * batch, 3),  # Stage 2: crops
    }


def proxy_part(
    seg_work: Path, data: dict[str, Any], sizes: Sizes, precision: str
) -> dict[str, Any]:
    """Stage 3 as the workflow runs it (crops read in workers, masks pasted and RLE-encoded
    in a thread) on the model loaded from the Stage 2 fp32 run's checkpoint, over the train
    images ``proxy_repeats`` times; and the forward alone on one staged batch."""
    import torch

    from boxcaseg.data.coco import load_json
    from boxcaseg.engine import resume_checkpoint
    from boxcaseg.masks import rle_encode_window
    from boxcaseg.mm.seg.model import load_segmentor
    from boxcaseg.proxy_inference import (
        effective_batch_size,
        iter_proxy_masks,
        model_input_size,
        predict_batch,
    )

    checkpoint = resume_checkpoint(seg_work)
    if checkpoint is None:
        raise FileNotFoundError(f"no Stage 2 checkpoint in {seg_work} (stage2_train_fp32 failed)")
    model = load_segmentor(str(checkpoint))
    device = next(model.parameters()).device
    size = model_input_size(model)
    coco = load_json(data["train_boxes"])
    sizes_by_id = {img["id"]: (img["height"], img["width"]) for img in coco["images"]}
    images = coco["images"] * sizes.proxy_repeats
    per_image = {img["id"]: 0 for img in coco["images"]}
    for ann in coco["annotations"]:
        if not ann.get("iscrowd"):
            per_image[ann["image_id"]] += 1
    instances = sum(per_image[img["id"]] for img in images)

    def encode(image_id: int, ann_ids: list[int], window_masks: Any) -> int:
        h, w = sizes_by_id[image_id]
        return len([rle_encode_window(m, win, h, w) for win, m in window_masks])

    def run(subset: list[dict[str, Any]]) -> int:
        return sum(
            iter_proxy_masks(
                model,
                coco,
                input_size=size,
                batch_size=sizes.proxy_batch_size,
                num_workers=sizes.proxy_workers,
                precision=precision,
                post_workers=1,
                images=subset,
                windows=True,
                postprocess=encode,
                progress=False,
            )
        )

    # warm-up, one pass over the images: cudnn's kernel choice for the full and the last batch
    run(coco["images"])
    sync()
    start = time.perf_counter()
    done = run(images)
    sync()
    elapsed = time.perf_counter() - start
    if done != instances:
        raise RuntimeError(f"Stage 3 gave {done} masks for {instances} instances")
    batch = effective_batch_size(sizes.proxy_batch_size, size, device)
    crops = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, device=device)
    passes = sizes.forward_passes
    predict_batch(model, crops, precision)
    sync()
    start = time.perf_counter()
    for _ in range(passes):
        predict_batch(model, crops, precision)
    sync()
    forward = time.perf_counter() - start
    return {
        "checkpoint": "stage2_train_fp32's last checkpoint",
        "precision": precision,
        "input_size": size,
        "batch_size": batch,
        "num_workers": sizes.proxy_workers,
        "instances": instances,
        "inst_per_s": round(instances / elapsed, 2),
        "forward_only_inst_per_s": round(batch * passes / forward, 2),
    }


def training_options(
    kind: str, sizes: Sizes, save_checkpoint: bool
) -> tuple[str, int, dict[str, Any]]:
    """The config, iteration count and cfg_options of a Stage 2 ('seg') or Stage 5 ('det')
    part: a workflow config section of ``sizes``, translated by ``boxcaseg.sections`` as the
    workflow translates it; one log line and no checkpoint before the end (and none at the
    end unless ``save_checkpoint``)."""
    from boxcaseg.sections import detection_options, segmentation_options

    seg = kind == "seg"
    config = SEG_CONFIG if seg else DET_CONFIG
    iters = sizes.seg_iters if seg else sizes.det_iters
    options = {
        "default_hooks.logger.interval": iters,
        "default_hooks.checkpoint.interval": 10**6,
        "default_hooks.checkpoint.save_last": save_checkpoint,
        **(sizes.seg_cfg if seg else sizes.det_cfg),
    }
    if seg and sizes.seg_crop:
        options.update(pipeline_options(config, "BoxCasegCrop", sizes.seg_crop))
    if not seg and sizes.det_scale:
        options.update(pipeline_options(config, "Resize", {"scale": sizes.det_scale}))
    section = {"max_iters": iters, **(sizes.seg if seg else sizes.det), "cfg_options": options}
    translate = segmentation_options if seg else detection_options
    return config, iters, translate(section)


def pipeline_options(config: str, transform: str, values: dict[str, Any]) -> dict[str, Any]:
    """cfg_options setting ``values`` on the train pipeline's ``transform`` step (found by
    type, not by a hard-coded index)."""
    from boxcaseg.engine import load_config

    pipeline = load_config(config).train_dataloader.dataset.pipeline
    index = next(i for i, step in enumerate(pipeline) if step["type"] == transform)
    return {f"train_dataloader.dataset.pipeline.{index}.{k}": v for k, v in values.items()}


def reset_gpu_memory() -> float | None:
    """Free what earlier parts left and restart the peak count; the MiB still allocated."""
    import torch

    gc.collect()
    if not torch.cuda.is_available():
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return round(torch.cuda.memory_allocated() / 2**20, 1)


def peak_gpu_mb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# --- pure helpers -------------------------------------------------------------------------------


def iteration_rates(times: list[float], data_times: list[float], warmup: int) -> dict[str, Any]:
    """Iterations/s over the iterations after ``warmup`` (at least the last one is kept), from
    IterTimerHook's per-iteration times (data loading included; the loss's ``.item()`` in the
    runtime-info hook synchronises the GPU before each time is taken), and the share of that
    time spent waiting for data."""
    if not times:
        raise ValueError("the training recorded no iteration times")
    skip = min(warmup, len(times) - 1)
    timed, waited = times[skip:], data_times[skip:]
    total = sum(timed)
    return {
        "timed_iters": len(timed),
        "it_per_s": round(float(len(timed) / total), 3),
        "data_time_fraction": round(float(sum(waited) / total), 3),
    }


def part_problems(results: dict[str, Any], cuda: bool) -> list[str]:
    """What is missing or wrong in a results file: every part present, with a positive rate,
    or skipped (only the AMP / fp16 parts, only without a GPU)."""
    problems = []
    for name in PARTS:
        part = results.get("parts", {}).get(name)
        if part is None:
            problems.append(f"{name}: missing")
        elif "error" in part:
            problems.append(f"{name}: {part['error']}")
        elif "skipped" in part:
            if cuda or name.endswith("fp32"):
                problems.append(f"{name}: skipped ({part['skipped']})")
        else:
            rate = part.get("it_per_s", part.get("inst_per_s"))
            if not rate or rate <= 0:
                problems.append(f"{name}: no positive rate")
    return problems


def results_table(results: dict[str, Any]) -> str:
    """One line per part: its rate, peak GPU memory and wall time."""
    rows = [("part", "rate", "peak GPU MiB", "seconds")]
    for name, part in results["parts"].items():
        if "skipped" in part:
            rate = f"skipped: {part['skipped']}"
        elif "error" in part:
            rate = f"FAILED: {part['error'][:80]}"
        elif "it_per_s" in part:
            rate = (
                f"{part['it_per_s']} it/s, {part['images_per_s']} images/s "
                f"(batch {part['batch_size']}, data wait {part['data_time_fraction']:.0%})"
            )
        else:
            rate = (
                f"{part['inst_per_s']} inst/s, forward only {part['forward_only_inst_per_s']} "
                f"(batch {part['batch_size']}, {part['input_size']} px)"
            )
        peak = part.get("peak_gpu_mb")
        rows.append(
            (name, rate, "-" if peak is None else f"{peak:.0f}", str(part.get("seconds", "")))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    head = f"device: {results['device']} (torch {results['torch']})"
    lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
