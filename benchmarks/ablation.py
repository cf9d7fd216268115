"""Stage 2 ablation on real photos: mIoU* on the val split per change, same budget.

    python benchmarks/ablation.py                                  # all rows, config/coco128_person.yaml
    python benchmarks/ablation.py --rows paper colour --iters 600  # some rows, another budget
    python benchmarks/ablation.py --configfile my.yaml             # your own data section

Each row trains the Stage 2 model (`boxcaseg train-seg`, the workflow's own command) from
scratch with the run's Stage 1 files (made first with `snakemake --until prepare_data` when
missing) and reads its mIoU* (salient head, inside the true boxes of the val split) next to the
box-as-mask baseline. Rows are cumulative: each adds one change to the row before it, starting
from the paper's recipe scaled to a CPU (plain pairwise term, no augmentation). The last row is
the packaged real-photo config (seg/boxcaseg_hr18s_real_cpu.py). Prints a Markdown table, writes
JSON next to it (benchmarks/results/ablation_<run>.json).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
REAL_CONFIG = "seg/boxcaseg_hr18s_real_cpu.py"

PLAIN_PAIR = dict(_delete_=True, type="PairwiseSmoothLoss", loss_weight=0.05)


@functools.cache
def real_config():
    """REAL_CONFIG, loaded once."""
    from boxcaseg.engine import load_config

    return load_config(REAL_CONFIG)


def pipeline(photometric: bool, box_flip: bool, salient_box_crop: float) -> list[dict]:
    """The real-photo config's training pipeline with its additions switched on or off."""
    steps = []
    for step in real_config().train_dataloader.dataset.pipeline:
        step = dict(step)
        if step["type"] == "PhotoMetricDistortion" and not photometric:
            continue
        if step["type"] == "BoxCasegCrop":
            step.update(box_flip=box_flip, salient_box_crop=salient_box_crop)
        steps.append(step)
    return steps


PAPER_INFERENCE = {"model.test_cfg": dict(_delete_=True, threshold=0.5, flip=False)}
# the optimiser of the rows before `adamw`: the demo config's SGD (the paper's optimiser)
SGD = {
    "optim_wrapper.optimizer": dict(
        _delete_=True, type="SGD", lr=0.02, momentum=0.9, weight_decay=1e-4
    )
}
# REAL_CONFIG's inference without the multi-scale views (the `inference` row)
FLIP_INFERENCE = dict(scales=None)


def without_ema() -> dict:
    """REAL_CONFIG's hooks less its weight averaging (EMAHook): the rows before `ema` train
    and are graded on the raw weights, as they were measured."""
    hooks = [dict(h) for h in real_config().custom_hooks if h["type"] != "EMAHook"]
    return {"custom_hooks": hooks}


# (row name, what it changes, cfg_options on top of REAL_CONFIG, or {"evaluate": row}: the
# checkpoint of that row evaluated with REAL_CONFIG's inference settings (updated by
# "test_cfg", when given), no training).
# Cumulative: each row adds one change to the row before it; the training rows infer as the
# paper does (threshold 0.5, no flip), the last row is the packaged config itself.
def rows() -> list[tuple[str, str, dict]]:
    raw = without_ema()
    sgd_rows = {**PAPER_INFERENCE, **SGD, **raw}  # what every row before `adamw` shares
    plain = {"train_dataloader.dataset.pipeline": pipeline(False, False, 0.0), **sgd_rows}
    return [
        (
            "paper",
            "the paper's recipe at this budget: plain pairwise term (weight 0.05), box "
            "crops jittered only, salient images whole (resized, cropped, flipped)",
            {**plain, "model.loss_pair": PLAIN_PAIR},
        ),
        (
            "colour",
            "+ colour-affinity pairwise term (BoxInst style) instead of the plain one",
            plain,
        ),
        (
            "augment",
            "+ photometric augmentation (brightness, contrast, saturation, hue) and "
            "flipped box crops",
            {"train_dataloader.dataset.pipeline": pipeline(True, True, 0.0), **sgd_rows},
        ),
        (
            "salient-crops",
            "+ half of the salient images cropped around their object like box crops",
            {**sgd_rows, "train_dataloader.batch_sampler.box_per_batch": 8},
        ),
        (
            "box-ratio",
            "+ 11 box + 5 salient samples per batch of 16 (the paper's COCO ratio, "
            "22 + 10 of 32) instead of 8 + 8",
            sgd_rows,
        ),
        (
            "adamw",
            "+ AdamW (lr 0.001, weight decay 0.05) instead of SGD (lr 0.02, momentum 0.9)",
            {**PAPER_INFERENCE, **raw},
        ),
        (
            "inference",
            "+ inference threshold 0.4 and mirrored-crop averaging (model.test_cfg)",
            {"evaluate": "adamw", "test_cfg": FLIP_INFERENCE},
        ),
        (
            "multi-scale",
            "+ each crop also at 0.75x and 1.25x its size, logits averaged (model.test_cfg.scales)",
            {"evaluate": "adamw"},
        ),
        (
            "ema",
            "+ exponential moving average of the weights (EMAHook, momentum 0.01): the "
            "packaged seg/boxcaseg_hr18s_real_cpu.py",
            {},
        ),
    ]


def evaluate(checkpoint: Path, val_gt: Path, test_cfg: dict | None = None) -> dict:
    """mIoU* of a trained checkpoint with REAL_CONFIG's inference settings, updated by
    ``test_cfg`` (Stage 3's code)."""
    from boxcaseg.data.coco import load_json
    from boxcaseg.mm.seg.model import load_segmentor
    from boxcaseg.proxy_inference import grade_in_true_boxes

    cfg = real_config()
    model = load_segmentor(str(checkpoint), "cpu")
    model.test_cfg.update(cfg.model.test_cfg)
    model.test_cfg.update(test_cfg or {})
    return grade_in_true_boxes(model, load_json(val_gt), input_size=int(cfg.infer_size))


def run(cmd: list[str], log: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }
    with open(log, "w") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/coco128_person.yaml")
    parser.add_argument("--rows", nargs="*", choices=[r[0] for r in rows()])
    parser.add_argument("--iters", type=int, help="Stage 2 iterations (default: the config's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json")
    args = parser.parse_args()
    run_cfg = yaml.safe_load((REPO / args.configfile).read_text())
    out = REPO / "results" / run_cfg["run_name"]
    data = out / "data"
    if not (data / "val.gt.json").is_file():
        run(
            [
                sys.executable,
                "-m",
                "snakemake",
                "--cores",
                "2",
                "--configfile",
                args.configfile,
                "--until",
                "prepare_data",
            ],
            REPO / f"ablation_prepare_{run_cfg['run_name']}.log",
        )
    results = []
    for name, change, options in rows():
        if args.rows and name not in args.rows:
            continue
        work = out / "ablation" / name
        work.mkdir(parents=True, exist_ok=True)
        start = time.time()
        if "evaluate" in options:
            checkpoint = out / "ablation" / options["evaluate"] / "work" / "last_checkpoint"
            metrics = evaluate(
                Path(checkpoint.read_text().strip()), data / "val.gt.json", options.get("test_cfg")
            )
            metrics = {"model": metrics["model"], "box_as_mask": metrics["box_as_mask"]}
            (work / "miou_star.json").write_text(json.dumps(metrics, indent=1))
        else:
            section = {"seed": args.seed, "cfg_options": options}
            if args.iters:
                section["max_iters"] = args.iters
            run(
                [
                    sys.executable,
                    "-m",
                    "boxcaseg.cli",
                    "train-seg",
                    "--config",
                    REAL_CONFIG,
                    "--train",
                    str(data / "train.boxes.json"),
                    "--salient",
                    str(data / "salient.json"),
                    "--val",
                    str(data / "val.gt.json"),
                    "--work-dir",
                    str(work / "work"),
                    "--metrics-out",
                    str(work / "miou_star.json"),
                    "--section",
                    json.dumps(section),
                ],
                work / "train.log",
            )
            metrics = json.loads((work / "miou_star.json").read_text())
        row = {
            "row": name,
            "change": change,
            "salient_head_miou_star": round(100 * metrics["model"]["miou_star"], 2),
            "box_as_mask_miou_star": round(100 * metrics["box_as_mask"]["miou_star"], 2),
            "instances": metrics["model"]["instances"],
            "minutes": round((time.time() - start) / 60, 1),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    path = Path(args.json or REPO / f"benchmarks/results/ablation_{run_cfg['run_name']}.json")
    if path.is_file():  # rows measured earlier (same file, other rows) stay in the table
        earlier = {r["row"]: r for r in json.loads(path.read_text())["rows"]}
        earlier.update({r["row"]: r for r in results})
        results = [earlier[name] for name, _, _ in rows() if name in earlier]
    lines = [
        "| row | change | mIoU* salient head | box as mask | minutes |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['row']} | {r['change']} | {r['salient_head_miou_star']:.2f} | "
        f"{r['box_as_mask_miou_star']:.2f} | {r['minutes']} |"
        for r in results
    ]
    print("\n".join(lines))
    path.write_text(
        json.dumps(
            {
                "configfile": args.configfile,
                "iters": args.iters,
                "seed": args.seed,
                "rows": results,
            },
            indent=1,
        )
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
