"""The real-photo bar (issue #25, ImageNet features): one whole workflow run, timed, and its
figures against the targets: Stage 2 salient head (val) and Stage 4 proxy masks (train) each 15
mIoU* points above box-as-mask; the Mask R-CNN on true masks at box AP >= 10 (the detectors
learn); the weak Mask R-CNN's mask AP at least 0.85 x the true-mask one's and above those of
box-as-mask, GrabCut and BoxInst; the run in 45 minutes. One run is one seed: the seed spread
comes from `benchmarks/seeds.py`.

    python benchmarks/real_photos.py                       # config/coco128_person.yaml
    python benchmarks/real_photos.py --configfile config/my_photos.yaml --run-name my_bench
    python benchmarks/real_photos.py --results results/coco128_person   # figures of a finished run

The run goes into `results/<run_name>_bench/` (never over an existing run: a folder that is
already there is refused), with the config's own seeds, so on the same machine it gives the
config's own run's figures again. Wall time is the `snakemake --cores all` call's. Prints the
bar table and writes it as JSON (benchmarks/results/real_photos_<run_name>.json). Not a test:
it measures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from seeds import headline, run_workflow  # benchmarks/seeds.py: the seed table's figures and runs

REPO = Path(__file__).resolve().parents[1]

TARGET_GAIN = 15.0  # mIoU* points above box-as-mask
TARGET_FULL_BOX_AP = 10.0
TARGET_WEAK_OF_FULL = 0.85
TARGET_MINUTES = 45.0


def bar_rows(figures: dict[str, float], wall_minutes: float | None) -> list[dict[str, object]]:
    """One row per target: the measured value, the target and whether it is met."""
    rows = []
    for name, masks, baseline in (
        (
            "Stage 2 salient head, val: gain over box-as-mask (mIoU* points)",
            "salient head mIoU* (val)",
            "box as mask mIoU* (val)",
        ),
        (
            "Stage 4 proxy masks, train: gain over box-as-mask (mIoU* points)",
            "proxy masks mIoU* (train)",
            "box as mask mIoU* (train)",
        ),
    ):
        if masks in figures:
            gain = figures[masks] - figures[baseline]
            rows.append(
                {
                    "target": name,
                    "value": round(gain, 2),
                    "needs": f">= {TARGET_GAIN}",
                    "met": gain >= TARGET_GAIN,
                }
            )
    if "full box AP" in figures:
        rows.append(
            {
                "target": "Mask R-CNN on true masks, box AP (val)",
                "value": figures["full box AP"],
                "needs": f">= {TARGET_FULL_BOX_AP:g}",
                "met": figures["full box AP"] >= TARGET_FULL_BOX_AP,
            }
        )
    weak = figures.get("weak mask AP")
    if weak is not None and figures.get("full mask AP"):
        ratio = weak / figures["full mask AP"]
        rows.append(
            {
                "target": "Mask R-CNN mask AP, val: weak / true-mask",
                "value": round(ratio, 2),
                "needs": f">= {TARGET_WEAK_OF_FULL}",
                "met": ratio >= TARGET_WEAK_OF_FULL,
            }
        )
    for other in ("box", "grabcut", "boxinst"):
        if weak is not None and f"{other} mask AP" in figures:
            rows.append(
                {
                    "target": f"Mask R-CNN mask AP, val: weak minus {other}",
                    "value": round(weak - figures[f"{other} mask AP"], 2),
                    "needs": "> 0",
                    "met": weak > figures[f"{other} mask AP"],
                }
            )
    if wall_minutes is not None:
        rows.append(
            {
                "target": "whole run, wall minutes",
                "value": wall_minutes,
                "needs": f"<= {TARGET_MINUTES:g}",
                "met": wall_minutes <= TARGET_MINUTES,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default="config/coco128_person.yaml")
    parser.add_argument("--run-name", help="default: the config's run_name + '_bench'")
    parser.add_argument(
        "--results", help="read the figures of this finished run instead of running one"
    )
    parser.add_argument("--json")
    args = parser.parse_args()
    base = yaml.safe_load((REPO / args.configfile).read_text())
    wall_minutes = None
    if args.results:
        out = Path(args.results).resolve()
    else:
        name = args.run_name or f"{base['run_name']}_bench"
        out = REPO / "results" / name
        if out.exists():
            print(
                f"{out} exists: give another --run-name, or --results {out} to read it",
                file=sys.stderr,
            )
            return 2
        wall_minutes = round(run_workflow(args.configfile, {"run_name": name}), 1)
    figures = headline(out)
    rows = bar_rows(figures, wall_minutes)
    width = max(len(r["target"]) for r in rows)
    print(f"\n{'target':<{width}}  {'value':>7}  {'needs':>7}  met")
    for r in rows:
        print(
            f"{r['target']:<{width}}  {r['value']:7.2f}  {r['needs']:>7}  {'yes' if r['met'] else 'NO'}"
        )
    print("\nfigures (%):")
    for key, value in figures.items():
        print(f"  {key:<40} {value:7.2f}")
    path = Path(args.json or REPO / f"benchmarks/results/real_photos_{base['run_name']}.json")
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    path.write_text(
        json.dumps(
            {
                "configfile": args.configfile,
                "results": str(shown),
                "wall_minutes": wall_minutes,
                "bar": rows,
                "figures": figures,
            },
            indent=1,
        )
    )
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
