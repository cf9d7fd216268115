"""A finished run's Stage 2 model graded again under other inference settings, without
retraining: the salient head's mIoU* on val, then Stage 3 (proxy masks) and Stage 4 (merge,
drop, quality) on train, written where the weak detector can be trained from them.

    python benchmarks/regrade.py --results results/coco128_person --test-cfg size_divisor=32 \
        --out benchmarks/results/regrade/coco128_person

``model.test_cfg`` (threshold, flip, scales, size_divisor) acts only at inference, so a change
of it leaves the Stage 2 weights as they are: these are the figures a rerun of the run with the
changed config gives for Stage 2's mIoU* and Stage 4's quality. The weak detector on the new
proxy masks is then the workflow's own command (docs/results.md names it). Prints one JSON
line; writes miou_star.json, proxy_raw.json, proxy_masks.json, quality.json into --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mmengine.config import DictAction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", required=True, help="a finished run's results folder")
    parser.add_argument("--out", required=True, help="folder for the regraded files")
    parser.add_argument(
        "--test-cfg",
        nargs="+",
        action=DictAction,
        default={},
        metavar="KEY=VALUE",
        help="model.test_cfg settings to change (mmengine's --cfg-options syntax: "
        "scales=[0.75,1.0,1.25])",
    )
    parser.add_argument("--drop-threshold", type=float, default=None, help="default: the run's")
    parser.add_argument(
        "--resolve-overlaps",
        choices=["true", "false"],
        default=None,
        help="merge.resolve_overlaps (default: the run's)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="the run's Stage 3 thread count (resources)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=32, help="crops per forward pass (proxy.batch_size)"
    )
    args = parser.parse_args(argv)

    import torch

    from boxcaseg.data.coco import load_json, save_json
    from boxcaseg.merge_drop import run_merge
    from boxcaseg.mm.seg.model import load_segmentor
    from boxcaseg.proxy import proxy_masks_file
    from boxcaseg.proxy_inference import grade_in_true_boxes, model_input_size

    torch.set_num_threads(args.threads)
    results, out = Path(args.results), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = results / "segmentation" / "final.pth"
    model = load_segmentor(str(checkpoint), "cpu")
    model.test_cfg.update(args.test_cfg)
    input_size = model_input_size(model)
    val = grade_in_true_boxes(  # as the mIoU* hook of the real-photo configs (batch 32)
        model, load_json(results / "data" / "val.gt.json"), input_size=input_size, batch_size=32
    )
    save_json(val, out / "miou_star.json", indent=1)
    proxy_masks_file(
        model,
        str(results / "data" / "train.boxes.json"),
        str(out / "proxy_raw.json"),
        input_size=input_size,
        batch_size=args.batch_size,
        threshold=model.test_cfg["threshold"],
        num_workers=0,
        checkpoint=str(checkpoint),
    )
    run_quality = load_json(results / "proxy" / "quality.json")
    drop = args.drop_threshold
    if drop is None:
        drop = run_quality["quality"]["drop_threshold"]
    resolve = run_quality.get("resolve_overlaps", True)  # runs before it was recorded painted
    if args.resolve_overlaps is not None:
        resolve = args.resolve_overlaps == "true"
    quality = run_merge(
        str(out / "proxy_raw.json"),
        str(out / "proxy_masks.json"),
        drop,
        gt_json=str(results / "data" / "train.gt.json"),
        quality_json=str(out / "quality.json"),
        resolve_overlaps=resolve,
    )["quality"]
    line = {
        "results": str(results),
        "test_cfg": dict(model.test_cfg),
        "resolve_overlaps": resolve,
        "input_size": input_size,
        "salient_val_miou_star": round(100 * val["model"]["miou_star"], 2),
        "box_as_mask_val": round(100 * val["box_as_mask"]["miou_star"], 2),
        "proxies_train_miou_star": round(100 * quality["proxy"]["miou_star"], 2),
        "box_as_mask_train": round(100 * quality["box_as_mask"]["miou_star"], 2),
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
