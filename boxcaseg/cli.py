"""The ``boxcaseg`` command: one subcommand per workflow step, plus ``doctor``.

Subcommands are thin: they parse paths and one config section (JSON, as the workflow passes
it) and call package functions. Run ``boxcaseg <subcommand> -h`` for each one's arguments.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from boxcaseg.data.report import DataError
from boxcaseg.numerics import pin_cpu_numerics

pin_cpu_numerics()  # before anything loads torch: the same numbers on every x86 machine


def _section(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        section = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"--section is not valid JSON ({err})") from err
    if not isinstance(section, dict):
        raise DataError(f"--section must be a JSON object, got {type(section).__name__}")
    return section


def _copy_atomic(src: str | Path, dst: str | Path) -> None:
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.partial")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


def _publish_training(args: argparse.Namespace, curve_title: str) -> bool:
    """After a training run, on the main process only: copy the work dir's last checkpoint to
    the rule's output and draw the loss curve. False on the other ranks (they stop there)."""
    from mmengine.dist import is_main_process

    from boxcaseg.engine import resume_checkpoint
    from boxcaseg.figures import loss_curves

    if not is_main_process():
        return False
    if args.checkpoint_out:
        checkpoint = resume_checkpoint(args.work_dir)  # inside the work dir, checked
        if checkpoint is None:
            raise FileNotFoundError(f"{args.work_dir}: training wrote no checkpoint")
        _copy_atomic(checkpoint, args.checkpoint_out)
    if args.curve_out:
        loss_curves(args.work_dir, args.curve_out, curve_title)
    return True


# --- subcommands ------------------------------------------------------------------------------


def cmd_doctor(args: argparse.Namespace) -> int:
    from boxcaseg.doctor import run_doctor

    report = run_doctor()
    print("\n".join(report.lines))
    if report.problems:
        print("\nBROKEN INSTALL:", file=sys.stderr)
        for problem in report.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print("\nall good")
    return 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from boxcaseg.data.synthetic import DemoSpec, write_demo_dataset

    spec = DemoSpec(**_section(args.section))
    out = Path(args.out_dir)
    if out.exists():  # a directory() output: regenerate from scratch, no stale images
        shutil.rmtree(out)
    manifest = write_demo_dataset(
        out, spec, progress=lambda it: tqdm(it, desc="demo images", mininterval=2.0)
    )
    print(json.dumps(manifest, indent=1))
    return 0


def cmd_derive(args: argparse.Namespace) -> int:
    from boxcaseg.data.derive import DeriveSpec, derive_sets
    from boxcaseg.data.prepare import import_box_split, source_entry

    section = _section(args.section)
    source = source_entry(section)  # the box source's keys; the rest is the DeriveSpec
    coco, report = import_box_split(
        source,
        strict=False,
        decode_images=bool(section.get("decode_images", True)),
        where="data.derive",
    )
    report.raise_if_errors()
    spec = DeriveSpec(**{k: section[k] for k in DeriveSpec.__dataclass_fields__ if k in section})
    spec = replace(spec, keep_categories=tuple(spec.keep_categories))
    out = Path(args.out_dir)
    if out.exists():
        shutil.rmtree(out)
    manifest = derive_sets(coco, out, spec)
    print(json.dumps(manifest["counts"], indent=1))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from boxcaseg.data.prepare import prepare_dataset
    from boxcaseg.figures import dataset_summary
    from boxcaseg.sections import generated_data_config

    section = _section(args.section)
    if args.generated:  # the generated sets, plus any salient sources the config names
        section = {**section, **generated_data_config(args.generated, section.get("salient"))}
    if not isinstance(section.get("splits"), dict) or "train" not in section["splits"]:
        raise DataError("data.splits needs a 'train' entry (see schemas/config.schema.yaml)")
    # checked before anything is written: a refused split leaves earlier outputs as they were
    required = ("val",) + (("train",) if args.require_train_masks else ())
    summary = prepare_dataset(section, args.out_dir, require_masks=required)
    if args.figure:
        dataset_summary(summary, args.figure)
    print(json.dumps(summary, indent=1))
    return 0


def cmd_train_seg(args: argparse.Namespace) -> int:
    from boxcaseg.data.coco import load_json, save_json
    from boxcaseg.sections import segmentation_options
    from boxcaseg.segmentation import train_segmentation

    section = _section(args.section)
    options = segmentation_options(section)
    train_segmentation(
        section.get("config", args.config),
        args.work_dir,
        train_ann=args.train,
        salient_file=args.salient,
        val_gt=args.val,
        cfg_options=options,
        launcher=args.launcher,
        amp=section.get("amp"),
    )
    if not _publish_training(args, "Stage 2: class-agnostic segmentation losses"):
        return 0
    if args.metrics_out:
        miou_file = Path(args.work_dir) / "miou_star.json"
        metrics = load_json(miou_file)["final"] if miou_file.is_file() else {"note": "no val split"}
        save_json(metrics, args.metrics_out, indent=1)
    return 0


def cmd_proxy(args: argparse.Namespace) -> int:
    from boxcaseg.proxy import run_proxy_inference

    section = _section(args.section)
    shard = (args.shard, args.shards) if args.shards else None
    summary = run_proxy_inference(
        args.checkpoint,
        args.boxes,
        args.out,
        config=args.config,
        input_size=section.get("input_size"),
        batch_size=section.get("batch_size", 32),
        threshold=section.get("threshold"),
        num_workers=section.get("num_workers", 2),
        precision=section.get("precision", "fp32"),
        post_workers=section.get("post_workers", 1),
        shard=shard,
    )
    print(json.dumps(summary))
    return 0


def cmd_gather_proxy(args: argparse.Namespace) -> int:
    from boxcaseg.proxy import gather_proxy_parts

    print(json.dumps(gather_proxy_parts(args.boxes, args.parts, args.out)))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from boxcaseg.figures import results_table
    from boxcaseg.merge_drop import merge_table_rows, run_merge

    section = _section(args.section)
    threshold = section.get("drop_threshold", 0.95)
    # the overlays are drawn from the merged masks and the ground truth run_merge holds
    # already: neither file is read a second time
    summary = run_merge(
        args.raw,
        args.out,
        threshold,
        gt_json=args.gt,
        quality_json=args.quality_out,
        overlays_png=args.overlays_out,
        overlay_images=section.get("overlay_images", 12),
        resolve_overlaps=section.get("resolve_overlaps", True),
    )
    if args.table_out:
        rows = merge_table_rows(summary)
        results_table(
            rows,
            list(rows[0]),
            args.table_out,
            "proxy masks vs true masks (train split)"
            if summary.get("quality")
            else "proxy masks (no true masks to compare with)",
        )
    print(json.dumps(summary, indent=1)[:4000])
    return 0


def cmd_grabcut(args: argparse.Namespace) -> int:
    from boxcaseg.baselines import grabcut_raw_masks
    from boxcaseg.data.coco import load_json
    from boxcaseg.grabcut import GrabCutSpec
    from boxcaseg.merge_drop import run_merge

    section = _section(args.section)
    spec = GrabCutSpec(**{k: section[k] for k in GrabCutSpec.__dataclass_fields__ if k in section})
    raw = grabcut_raw_masks(load_json(args.boxes), spec, threads=args.threads)
    # merged and scored like the learned proxies; only empty masks are dropped (threshold 0)
    summary = run_merge(
        raw,
        args.out,
        0.0,
        gt_json=args.gt,
        quality_json=args.quality_out,
        description="GrabCut masks from the boxes (baseline), merged as in Stage 4",
        resolve_overlaps=args.resolve_overlaps,
    )
    print(json.dumps(summary, indent=1)[:4000])
    return 0


def cmd_second_round_salient(args: argparse.Namespace) -> int:
    from boxcaseg.data.coco import load_json, save_json
    from boxcaseg.second_round import second_round_salient

    section = _section(args.section)
    index, counts = second_round_salient(
        load_json(args.salient),
        load_json(args.proxies),
        load_json(args.boxes),
        args.crops_dir,
        context=section.get("context", 0.25),
        min_side=section.get("min_side", 16),
    )
    save_json(index, args.out)
    print(
        f"[boxcaseg] second round's salient set: {counts['salient_images']} salient images + "
        f"{counts['taken']} of {counts['proxies']} round 1 proxy masks ({counts})"
    )
    return 0


def cmd_box_masks(args: argparse.Namespace) -> int:
    from boxcaseg.baselines import box_masks_file

    box_masks_file(args.boxes, args.out)
    return 0


def cmd_train_det(args: argparse.Namespace) -> int:
    from boxcaseg.detection import train_detection
    from boxcaseg.sections import detection_options

    section = _section(args.section)
    # --config: the variant's model config (the rule passes it: BoxInst has its own)
    train_detection(
        args.config or section["config"],
        args.work_dir,
        train_ann=args.train,
        drop_threshold=args.drop_threshold,
        iters_scale=args.iters_scale,
        cfg_options=detection_options(section),
        launcher=args.launcher,
        amp=section.get("amp"),
    )
    _publish_training(args, f"Stage 5: Mask R-CNN losses ({args.title})")
    return 0


def cmd_eval_det(args: argparse.Namespace) -> int:
    from mmengine.dist import is_main_process

    from boxcaseg.data.coco import save_json
    from boxcaseg.detection import grade_detector_in_true_boxes, predict_detection
    from boxcaseg.metrics import coco_evaluate
    from boxcaseg.sections import detection_options

    section = _section(args.section)
    config = args.config or section["config"]
    options = detection_options(section)
    files = predict_detection(
        config, args.checkpoint, args.gt, args.out_dir, cfg_options=options, launcher=args.launcher
    )
    if not is_main_process():  # rank 0 wrote the predictions; it alone scores them
        return 0
    metrics = {
        iou_type: coco_evaluate(args.gt, files[iou_type], iou_type) for iou_type in ("segm", "bbox")
    }
    # the mask head alone, given the true boxes: measurable when detection is still noise
    metrics["mask_head_in_true_boxes"] = grade_detector_in_true_boxes(
        config, args.checkpoint, args.gt, cfg_options=options
    )
    metrics["predictions"] = files
    save_json(metrics, args.metrics_out, indent=1)
    print(json.dumps(metrics, indent=1))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from boxcaseg.apply import predict_images

    section = _section(args.section)  # the workflow's `predict` section; flags win

    def option(name: str, default: Any) -> Any:
        value = getattr(args, name)
        return value if value is not None else section.get(name, default)

    summary = predict_images(
        args.checkpoint,
        args.images,
        args.out_dir,
        config=args.config,
        device=args.device,
        batch_size=option("batch_size", 1),
        overlays=bool(option("overlays", False)),
        score_threshold=option("score_threshold", 0.3),
        on_error=option("on_error", "stop"),
        categories_file=args.categories,
    )
    for problem in summary["skipped"]:
        print(f"skipped {problem['file_name']}: {problem['problem']}", file=sys.stderr)
    print(
        json.dumps(
            {k: v for k, v in summary.items() if k != "skipped"}
            | {"skipped": len(summary["skipped"]), "out_dir": args.out_dir},
            indent=1,
        )
    )
    return 0


def cmd_masks_from_boxes(args: argparse.Namespace) -> int:
    from boxcaseg.apply import masks_from_boxes
    from boxcaseg.data.prepare import BOX_SOURCE_KEYS

    if Path(args.out).exists() and not args.force:
        raise DataError(f"{args.out}: exists (nothing is overwritten; --force replaces it)")
    source = {"format": args.format}
    for key in BOX_SOURCE_KEYS:
        value = getattr(args, key)
        if value is not None:  # a list of class names may be given comma-separated
            source[key] = (
                value.split(",") if key in ("names", "classes") and "," in value else value
            )
    summary = masks_from_boxes(
        source,
        args.out,
        checkpoint=args.checkpoint,
        grabcut=args.grabcut,
        drop_threshold=args.drop_threshold,
        device=args.device,
        batch_size=args.batch_size,
    )
    print(json.dumps(summary, indent=1))
    return 0


def cmd_summarize(args: argparse.Namespace) -> int:
    from boxcaseg.summary import summarize

    summarize(
        variant_metrics=dict(v.split("=", 1) for v in args.metrics or []),
        seg_metrics=args.seg_metrics,
        quality_files=dict(v.split("=", 1) for v in args.quality or []),
        out_json=args.out_json,
        out_md=args.out_md,
        out_png=args.out_png,
        variant_costs={
            variant: files.split(",") for variant, files in (v.split("=", 1) for v in args.costs)
        },
        out_breakdown_png=args.out_breakdown_png,
    )
    print(Path(args.out_md).read_text())
    return 0


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="boxcaseg", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(func=func)
        return p

    add("doctor", cmd_doctor, "check the installed stack (versions, mmcv ops, GPU)")

    p = add("demo-data", cmd_demo_data, "generate the embedded demo dataset")
    p.add_argument("--section", help="the config's `demo` section as JSON")
    p.add_argument("--out-dir", required=True)

    p = add("derive", cmd_derive, "split one dataset into a box set and a disjoint salient set")
    p.add_argument("--section", required=True, help="the config's `data.derive` section as JSON")
    p.add_argument("--out-dir", required=True)

    p = add("prepare", cmd_prepare, "Stage 1: import, validate and split a dataset")
    p.add_argument("--section", required=True, help="the config's `data` section as JSON")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--generated", help="import a generated dataset (demo or derived) from here")
    p.add_argument("--require-train-masks", action="store_true")
    p.add_argument("--figure", help="dataset summary PNG")

    for name, func, help_text in (
        ("train-seg", cmd_train_seg, "Stage 2: train the class-agnostic segmentation model"),
        ("train-det", cmd_train_det, "Stage 5: train Mask R-CNN on a masks file"),
    ):
        p = add(name, func, help_text)
        p.add_argument("--section", help="the config's section as JSON")
        p.add_argument("--config", help="model config (if the section names none)")
        p.add_argument("--train", required=True, help="training annotation file")
        p.add_argument("--work-dir", required=True)
        p.add_argument("--checkpoint-out", help="copy the final checkpoint here")
        p.add_argument("--curve-out", help="loss curve PNG")
        p.add_argument("--launcher", default="none", choices=["none", "pytorch", "slurm"])
        if name == "train-seg":
            p.add_argument("--salient", help="salient.json of Stage 1")
            p.add_argument("--val", help="val ground truth with masks, for mIoU*")
            p.add_argument("--metrics-out", help="final mIoU* JSON")
        else:
            p.add_argument(
                "--drop-threshold", type=float, help="mask loss only above this confidence"
            )
            p.add_argument(
                "--iters-scale",
                type=float,
                default=1.0,
                help="train this many times the config's iterations, the schedule stretched alike",
            )
            p.add_argument("--title", default="", help="variant name for the plot title")

    p = add("proxy", cmd_proxy, "Stage 3: predict a proxy mask inside every training box")
    p.add_argument("--section", help="the config's `proxy` section as JSON")
    p.add_argument(
        "--config",
        help="the Stage 2 model config, only for a checkpoint that "
        "stores none (mmengine's checkpoints store the config they were trained with)",
    )
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--boxes", required=True, help="train.boxes.json of Stage 1")
    p.add_argument("--out", required=True, help="the proxy file, or this shard's part file")
    p.add_argument("--shard", type=int, default=0, help="with --shards: which shard (from 0)")
    p.add_argument(
        "--shards",
        type=int,
        default=0,
        help="split the images into this many shards and infer only --shard",
    )

    p = add("gather-proxy", cmd_gather_proxy, "Stage 3: join the part files of a sharded run")
    p.add_argument("--boxes", required=True, help="train.boxes.json of Stage 1")
    p.add_argument("--parts", nargs="+", required=True)
    p.add_argument("--out", required=True)

    p = add("merge", cmd_merge, "Stage 4: merge, score and mark proxy masks")
    p.add_argument("--section", help="the config's `merge` section as JSON")
    p.add_argument("--raw", required=True, help="proxy_raw.json of Stage 3")
    p.add_argument("--out", required=True)
    p.add_argument("--gt", help="train ground truth with masks (quality report), if any")
    p.add_argument("--quality-out")
    p.add_argument("--overlays-out")
    p.add_argument("--table-out")

    p = add("grabcut", cmd_grabcut, "GrabCut baseline: a mask inside every box, merged and graded")
    p.add_argument("--section", help="the config's `grabcut` section as JSON")
    p.add_argument("--boxes", required=True, help="train.boxes.json of Stage 1")
    p.add_argument("--out", required=True)
    p.add_argument("--gt", help="train ground truth with masks (quality report), if any")
    p.add_argument("--quality-out")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--keep-overlaps",
        dest="resolve_overlaps",
        action="store_false",
        help="as merge.resolve_overlaps false: each box keeps its own mask",
    )

    p = add(
        "second-round-salient",
        cmd_second_round_salient,
        "Stage 2, second round: the salient index plus round 1's kept proxy masks",
    )
    p.add_argument("--section", help="the config's `segmentation.second_round` as JSON")
    p.add_argument("--salient", required=True, help="salient.json of Stage 1")
    p.add_argument("--proxies", required=True, help="round 1's proxy_masks.json (Stage 4)")
    p.add_argument("--boxes", required=True, help="train.boxes.json of Stage 1")
    p.add_argument("--crops-dir", required=True, help="folder for the proxy crops and masks")
    p.add_argument("--out", required=True, help="the second round's salient index")

    p = add("box-masks", cmd_box_masks, "box-as-mask baseline: fill each box")
    p.add_argument("--boxes", required=True)
    p.add_argument("--out", required=True)

    p = add(
        "eval-det",
        cmd_eval_det,
        "Stage 5: predict on a split with true masks, score with pycocotools",
    )
    p.add_argument("--section", help="the config's `detection` section as JSON")
    p.add_argument("--config")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--gt", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--metrics-out", required=True)
    p.add_argument("--launcher", default="none", choices=["none", "pytorch", "slurm"])

    p = add(
        "predict",
        cmd_predict,
        "use a trained detector on new photos: COCO results (RLE masks, scores) and overlays",
    )
    p.add_argument(
        "images",
        nargs="+",
        help="image folders, image files, text files listing "
        "image paths, or a COCO file written by `boxcaseg prepare` (its ids kept)",
    )
    p.add_argument("--checkpoint", required=True, help="detection/<variant>/final.pth of a run")
    p.add_argument("--config", help="model config (default: the one stored in the checkpoint)")
    p.add_argument("--out-dir", required=True, help="a new folder (an existing one is refused)")
    p.add_argument("--section", help="the config's `predict` section as JSON (the workflow's)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the GPU when there is one)")
    p.add_argument(
        "--batch-size",
        type=int,
        help="images per forward pass (default 1: the evaluation's numbers exactly)",
    )
    p.add_argument(
        "--overlays",
        action="store_true",
        default=None,
        help="also draw the detections over each image (overlays/)",
    )
    p.add_argument("--score-threshold", type=float, help="overlays: draw from this score (0.3)")
    p.add_argument(
        "--on-error",
        choices=["stop", "skip"],
        help="an unreadable image: stop before predicting (default), or skip it "
        "and list it in predict.report.json",
    )
    p.add_argument(
        "--categories",
        help="a COCO file whose category ids the results use (by "
        "name; default: 1..K in the detector's class order)",
    )

    from boxcaseg.data.prepare import BOX_FORMATS, BOX_SOURCE_KEYS

    p = add(
        "masks-from-boxes",
        cmd_masks_from_boxes,
        "turn a box file into a COCO instances "
        "file with masks (the Stage 2 model or GrabCut, then Stage 4's merge)",
    )
    p.add_argument(
        "--format",
        required=True,
        choices=BOX_FORMATS,
        help="the box file's format, with its keys as in config.yaml's data.splits",
    )
    for key in BOX_SOURCE_KEYS:
        p.add_argument(f"--{key.replace('_', '-')}", help=f"the format's `{key}`")
    p.add_argument("--checkpoint", help="segmentation/final.pth of a run (the Stage 2 model)")
    p.add_argument("--grabcut", action="store_true", help="GrabCut instead of a Stage 2 model")
    p.add_argument("--out", required=True, help="the COCO instances file to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument(
        "--drop-threshold",
        type=float,
        default=0.5,
        help="proxy_kept: confidence above this (Stage 4's merge.drop_threshold)",
    )
    p.add_argument("--device", help="cpu, cuda, ... (default: the GPU when there is one)")
    p.add_argument("--batch-size", type=int, default=16, help="box crops per forward pass")

    p = add("summarize", cmd_summarize, "the final table: weak vs full vs box-as-mask")
    p.add_argument("--metrics", nargs="*", help="VARIANT=metrics.json ...")
    p.add_argument("--seg-metrics")
    p.add_argument("--quality", nargs="*", help="NAME=quality.json ... (proxy, grabcut)")
    p.add_argument(
        "--costs",
        nargs="*",
        default=[],
        help="VARIANT=bench.tsv[,bench.tsv...]: the Snakemake benchmark files of its jobs",
    )
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-png", required=True)
    p.add_argument("--out-breakdown-png", help="train masks' quality by fill, size and class")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DataError as err:  # bad input: a clear message, no traceback
        print(f"boxcaseg {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
