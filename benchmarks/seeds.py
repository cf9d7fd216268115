"""How far the headline figures move with the training seed: one run per seed, mean and spread.

    python benchmarks/seeds.py                                  # the demo, seeds 0 1 2
    python benchmarks/seeds.py --configfile config/coco128_person.yaml --seeds 0 1
    python benchmarks/seeds.py --configfile config/coco128_person.yaml --seeds 0 1 2 --no-run
    python benchmarks/seeds.py --variants weak full box boxinst boxinst_equal   # both BoxInst rows
    python benchmarks/seeds.py --configfile config/coco128.yaml --until proxies  # Stages 1-4
    python benchmarks/seeds.py --run-name demo_det480 --set detection.max_iters=480 \
        --variants weak full box --reuse-stages-from demo   # the detectors again, longer

Each seed is a whole workflow run (`snakemake --cores all`) with `segmentation.seed` and
`detection.seed` set to it (the data stay the same) into `results/<run_name>_seed<k>/`; seed 0
is the config's own run (`results/<run_name>/`: for the demo, `make demo`'s). A finished run
is not redone (Snakemake finds nothing to do; but a changed model config or code reruns it:
``--no-run`` reads the finished runs' figures as they are, without calling Snakemake, and keeps
the wall minutes the JSON already holds for each seed). Prints the
figures per seed, their mean and their spread (sample standard deviation, and max - min), and
writes them as JSON (benchmarks/results/seeds_<run_name>.json).

``--set KEY=VALUE`` changes config settings (dotted keys, YAML values) in every seed's run, under
``--run-name`` (a name of their own, so that the config's runs stay as they are);
``--reuse-stages-from RUN`` copies each seed's Stage 1-4 files (and its generated data) from
RUN's run of the same seed (their order in time kept, moved to now), so that only the
detectors train: what a rerun of Stages 1-4 would give anyway (the same seed on the same
machine gives the same bytes, docs/results.md, "What reproduces where").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def headline(out: Path) -> dict[str, float]:
    """The run's figures: mIoU* (%) of the salient head (val), of the proxy masks and GrabCut's
    (train), the proxies' and boxes' mean IoU by fill bin, each variant's mask AP / box AP (%)
    and its training cost (wall and CPU seconds, from the summary)."""
    figures: dict[str, float] = {}
    # a run may hold only some stages (e.g. the baselines' detectors, which need no Stage 2)
    seg_file, quality_file = out / "segmentation/miou_star.json", out / "proxy/quality.json"
    if seg_file.is_file():
        seg = json.loads(seg_file.read_text())
        figures["salient head mIoU* (val)"] = 100 * seg["model"]["miou_star"]
        figures["box as mask mIoU* (val)"] = 100 * seg["box_as_mask"]["miou_star"]
    quality = {}
    if quality_file.is_file():
        quality = json.loads(quality_file.read_text()).get("quality") or {}
    if quality.get("instances"):
        figures["proxy masks mIoU* (train)"] = 100 * quality["proxy"]["miou_star"]
        figures["box as mask mIoU* (train)"] = 100 * quality["box_as_mask"]["miou_star"]
        for row in quality.get("by_fill") or []:  # how much of its box the object fills
            if row["instances"]:
                figures[f"proxy mean IoU, fill {row['bin']}"] = 100 * row["mean_proxy_iou"]
                figures[f"box mean IoU, fill {row['bin']}"] = 100 * row["mean_box_iou"]
    grabcut = out / "proxy/grabcut_quality.json"
    if grabcut.is_file() and (json.loads(grabcut.read_text()).get("quality") or {}).get("proxy"):
        figures["GrabCut mIoU* (train)"] = (
            100 * json.loads(grabcut.read_text())["quality"]["proxy"]["miou_star"]
        )
    variant_dirs = sorted((out / "detection").iterdir()) if (out / "detection").is_dir() else []
    for variant_dir in variant_dirs:
        metrics = variant_dir / "metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            figures[f"{variant_dir.name} mask AP"] = m["segm"]["AP"]
            figures[f"{variant_dir.name} box AP"] = m["bbox"]["AP"]
            fill = median_mask_box_area(variant_dir / "val/predictions.segm.json")
            if fill is not None:  # issue #34's check that BoxInst's masks lie inside their boxes
                figures[f"{variant_dir.name} median mask / box area"] = fill
            if m.get("mask_head_in_true_boxes"):  # Mask R-CNN's mask head given the true boxes
                figures[f"{variant_dir.name} mask head mIoU* (val)"] = (
                    100 * m["mask_head_in_true_boxes"]["model"]["miou_star"]
                )
    summary = out / "summary/results.json"
    costs = json.loads(summary.read_text()).get("costs", {}) if summary.is_file() else {}
    for variant, cost in costs.items():  # the compute of each detector's route (training)
        figures[f"{variant} train wall s"] = cost["wall_s"]
        figures[f"{variant} train CPU s"] = cost["cpu_s"]
    if not costs:  # no summary yet: a baseline's route is its one training job
        from boxcaseg.summary import job_cost

        for variant_dir in variant_dirs:
            bench = out / f"benchmarks/train_detection_{variant_dir.name}.tsv"
            if variant_dir.name != "weak" and bench.is_file():
                cost = job_cost([str(bench)])
                figures[f"{variant_dir.name} train wall s"] = cost["wall_s"]
                figures[f"{variant_dir.name} train CPU s"] = cost["cpu_s"]
    return figures


def median_mask_box_area(predictions: Path, min_score: float = 0.3) -> float | None:
    """Median over a detector's val predictions (score >= min_score) of its mask's area over
    its box's: about the object's share of its box when the masks learned, 1 or more when
    they fill or overflow their boxes (BoxInst's collapse of issue #34 read 7-33)."""
    if not predictions.is_file():
        return None
    from pycocotools import mask as mask_utils

    ratios = [
        mask_utils.area(p["segmentation"]) / max(p["bbox"][2] * p["bbox"][3], 1e-6)
        for p in json.loads(predictions.read_text())
        if p["score"] >= min_score
    ]
    return round(float(statistics.median(ratios)), 3) if ratios else None


# --until proxies: the files of Stages 2-4 the headline reads (no detector is trained)
PROXY_TARGETS = ("segmentation/miou_star.json", "proxy/quality.json", "proxy/grabcut_quality.json")


def run_workflow(
    configfile: str, overrides: dict | None = None, targets: list[str] | None = None
) -> float:
    """`snakemake --cores all` on ``configfile`` (path relative to the repository), with
    ``overrides`` (e.g. another run_name, seeds) as a second config file written under
    results/, building ``targets`` (default: the whole run); returns the wall minutes."""
    configfiles = [str(REPO / configfile)]
    if overrides:
        overlay = REPO / "results" / f".{overrides['run_name']}.yaml"
        overlay.parent.mkdir(parents=True, exist_ok=True)
        overlay.write_text(yaml.safe_dump(overrides))
        configfiles.append(str(overlay))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    start = time.time()
    subprocess.run(
        # the targets before --configfile, which takes every path after it
        [sys.executable, "-m", "snakemake", *(targets or []), "--cores", "all", "--configfile"]
        + configfiles,
        cwd=REPO,
        env=env,
        check=True,
    )
    return (time.time() - start) / 60


def dotted_overrides(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs (dotted keys, YAML values) as a nested config dict."""
    nested: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE (e.g. detection.max_iters=480)")
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return nested


def deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# a run's Stage 1-4 files, under results/<run>/ (plus resources/<run>/, its generated data,
# and every benchmark file but the detectors')
STAGE_1_TO_4 = ("data", "segmentation", "proxy")
DETECTOR_JOBS = ("train_detection_", "evaluate_detection_")


def reuse_stages(source: str, target: str) -> None:
    """Copy results/<source>/'s Stage 1-4 files and resources/<source>/ to ``target``'s, their
    order in time kept but moved to now (Snakemake then finds them up to date: each output
    stays newer than the copied inputs it was made from, and all are newer than the data
    folders Stage 1 reads, whose times a mount or copy of ../shared may have renewed since the
    source run); refuses a target that exists."""
    src, dst = REPO / "results" / source, REPO / "results" / target
    if dst.exists():
        raise SystemExit(f"--reuse-stages-from: results/{target}/ exists; remove it first")
    if not (src / "proxy" / "proxy_masks.json").is_file():
        raise SystemExit(f"--reuse-stages-from: results/{source}/ has no Stage 4 output yet")
    for part in STAGE_1_TO_4:
        if (src / part).is_dir():
            shutil.copytree(src / part, dst / part)
    (dst / "benchmarks").mkdir(parents=True)
    for bench in (src / "benchmarks").glob("*.tsv"):
        if not bench.name.startswith(DETECTOR_JOBS):
            shutil.copy2(bench, dst / "benchmarks" / bench.name)
    copies = [dst]
    if (REPO / "resources" / source).is_dir():
        shutil.copytree(REPO / "resources" / source, REPO / "resources" / target)
        copies.append(REPO / "resources" / target)
    renew_times(copies)


def renew_times(folders: list[Path]) -> None:
    """Give every path under ``folders`` (folders too: Snakemake dates a directory output by
    the stamp file inside it) a time from now on, in the order of their present times, one
    millisecond apart."""
    paths = sorted(
        (p for folder in folders for p in [folder, *folder.rglob("*")]),
        key=lambda p: p.stat().st_mtime_ns,
    )
    start = time.time_ns()
    for i, path in enumerate(paths):
        stamp = start + i * 1_000_000
        os.utime(path, ns=(stamp, stamp))


def check_run_settings(args: argparse.Namespace, config_run_name: str, settings: dict) -> None:
    """--set and --reuse-stages-from make runs of their own: under a --run-name other than the
    config's (whose runs they would otherwise change), a name the settings leave alone, seeds
    the settings leave alone, and only detector settings when Stages 1-4 are copied (the copies
    carry no Snakemake record of their settings, so a changed Stage 1-4 setting would not rerun
    them)."""
    if not (args.set or args.reuse_stages_from):
        return
    if not args.run_name or args.run_name == config_run_name:
        raise SystemExit(
            "--set / --reuse-stages-from: give the runs a --run-name of their own (the config's "
            f"runs, results/{config_run_name}*/, stay as they are)"
        )
    if "run_name" in settings:
        raise SystemExit("--set run_name=...: use --run-name")
    if any("seed" in settings.get(section, {}) for section in ("segmentation", "detection")):
        raise SystemExit("--set ...seed=...: the seeds are --seeds")
    if args.reuse_stages_from and set(settings) - {"detection"}:
        raise SystemExit(
            "--reuse-stages-from copies Stages 1-4 as they are: --set may change detection.* "
            f"settings only (got {sorted(settings)})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config.yaml")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json")
    parser.add_argument(
        "--no-run", action="store_true", help="only read the finished runs' figures (no snakemake)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        help="detection.variants for these runs (e.g. the config's plus boxinst_equal)",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="config settings for these runs (dotted keys: detection.max_iters=480)",
    )
    parser.add_argument("--run-name", help="the runs' name (default: the config's run_name)")
    parser.add_argument(
        "--reuse-stages-from",
        metavar="RUN",
        help="copy each seed's Stage 1-4 files from RUN's run of that seed (only the detectors "
        "train)",
    )
    parser.add_argument(
        "--until",
        choices=["all", "proxies"],
        default="all",
        help="proxies: Stages 1-4 only (salient head, proxies, GrabCut; no detector)",
    )
    args = parser.parse_args()
    base = yaml.safe_load((REPO / args.configfile).read_text())
    run_name = args.run_name or base["run_name"]
    settings = dotted_overrides(args.set)
    check_run_settings(args, base["run_name"], settings)
    path = Path(args.json or REPO / f"benchmarks/results/seeds_{run_name}.json")
    # --no-run keeps the wall minutes an earlier call measured for the same seed (and the
    # settings the runs were made with)
    earlier_file = json.loads(path.read_text()) if path.is_file() else {}
    earlier = earlier_file.get("runs", {})
    recorded_settings = args.set or (earlier_file.get("set", []) if args.no_run else [])
    runs = {}
    for seed in args.seeds:
        name, overrides = run_name, {"run_name": run_name}
        if seed != 0:  # seed 0 is the config's own run (the schema's default seeds)
            name = f"{run_name}_seed{seed}"
            overrides = {
                "run_name": name,
                "segmentation": {"seed": seed},
                "detection": {"seed": seed},
            }
        overrides = deep_merge(overrides, settings)
        if args.variants:
            overrides = deep_merge(overrides, {"detection": {"variants": args.variants}})
        if overrides == {"run_name": base["run_name"]}:
            overrides = None
        if args.reuse_stages_from and not args.no_run:
            source = args.reuse_stages_from + (f"_seed{seed}" if seed != 0 else "")
            if not (REPO / "results" / name).exists():
                reuse_stages(source, name)
        if args.no_run:
            minutes = earlier.get(str(seed), {}).get("wall_minutes")
        else:
            targets = None
            if args.until == "proxies":
                targets = [f"results/{name}/{t}" for t in PROXY_TARGETS]
            minutes = round(run_workflow(args.configfile, overrides, targets), 1)
        runs[seed] = {"figures": headline(REPO / "results" / name), "wall_minutes": minutes}
        print(json.dumps({seed: runs[seed]}), flush=True)
    # the figures every seed has (a seed run before a figure existed lacks it)
    names = [
        k
        for k in runs[args.seeds[0]]["figures"]
        if all(k in runs[s]["figures"] for s in args.seeds)
    ]
    summary = {}
    for key in names:
        values = [runs[s]["figures"][key] for s in args.seeds]
        summary[key] = {
            "values": [round(v, 2) for v in values],
            "mean": round(statistics.mean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
            "range": round(max(values) - min(values), 2),
        }
    width = max(len(k) for k in names)
    print(
        f"\n{'figure':<{width}}  "
        + "  ".join(f"seed {s:>2}" for s in args.seeds)
        + "    mean    std  range"
    )
    for key in names:
        row = summary[key]
        print(
            f"{key:<{width}}  "
            + "  ".join(f"{v:7.2f}" for v in row["values"])
            + f"  {row['mean']:6.2f}  {row['std']:5.2f}  {row['range']:5.2f}"
        )
    path.write_text(
        json.dumps(
            {
                "configfile": args.configfile,
                "set": recorded_settings,
                "seeds": args.seeds,
                "runs": runs,
                "summary": summary,
            },
            indent=1,
        )
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
