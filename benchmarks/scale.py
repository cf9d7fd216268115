"""The COCO-scale benchmark: every data stage on a synthetic COCO-sized annotation set, each in
its own process, at two sizes (by default 10% and 100% of COCO train2017: 118,287 images,
860,001 instances), with wall time and peak RSS per stage and the linear extrapolation from the
smaller run, so that any super-linear step shows.

    python benchmarks/run.py --only scale                                # 10% and 100%
    python benchmarks/run.py --only scale --scale-fractions 0.01 0.1    # a quick look
    python benchmarks/run.py --only scale --scale-data /big/disk/scale  # keep + reuse the data

The data: image entries of COCO's most common sizes (640x480, 480x640, 640x427, ...), each a
symbolic link to one of a dozen shared JPEG files of its size (so every path exists and Stage 3
reads real pixels); per image a COCO-like number of objects (1% of images empty, a long tail up
to 93), COCO-like box sizes (many small, few large), one polygon (8-32 points) per object, 0.9%
crowd regions as uncompressed RLE, 80 classes with a skewed frequency; a val split of 5,000
images x fraction; a two-pair salient set (Stage 1 needs one).

The stages, as the workflow runs them (image decoding off where the stage can skip it):
- import       Stage 1 (`prepare_dataset`): import + validate train and val, write the box and
               ground-truth files, reports and the salient index
- derive       `boxcaseg derive`'s work: import the train file, pick salient sources, write the
               train / val split files and the salient crops
- proxy        Stage 3's data path (`proxy.proxy_masks_file`) with a stub model (a 1x1 conv): the
               DataLoader reading and cropping every image (2 workers), batching, pasting back,
               RLE encoding, writing proxy_raw.json; 64 px crops unless --scale-input-size says
               otherwise. The segmentation network itself is not measured (see the `proxy`
               benchmark for it).
- merge        Stage 4 (`boxcaseg merge`, the rule's command): merge + drop + RLE, quality
               against the ground truth, overlays and the quality table
- box_masks    the box-as-mask baseline (`boxcaseg box-masks`)
- det_dataset  Stage 5's dataset build: ``dataset_fields`` + mmdet's ConfidenceCocoDataset over
               the merged file with the COCO Mask R-CNN config's pipeline (loads the file,
               builds the data list), then the first 4 training samples through the pipeline

Peak RSS: the largest sum of the resident memory of the stage's process and its children
(DataLoader workers), sampled every 0.1 s (what Snakemake's benchmark files report), and never
less than the stage process's own peak (getrusage).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
COCO_IMAGES, COCO_INSTANCES, COCO_VAL_IMAGES = 118_287, 860_001, 5_000
# COCO train2017's most common image sizes (width, height) and about how often they occur
SIZES = [
    ((640, 480), 0.45),
    ((480, 640), 0.12),
    ((640, 427), 0.12),
    ((427, 640), 0.05),
    ((640, 424), 0.05),
    ((640, 426), 0.04),
    ((640, 428), 0.04),
    ((500, 375), 0.03),
    ((640, 512), 0.03),
    ((640, 360), 0.03),
    ((612, 612), 0.02),
    ((640, 640), 0.02),
]
STAGES = ("import", "derive", "proxy", "merge", "box_masks", "det_dataset")


# --- the synthetic data set -----------------------------------------------------------------------


def _shared_images(folder: Path, seed: int) -> None:
    """One JPEG per size: smooth blobs on a gradient, so a crop holds some structure."""
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for (w, h), _ in SIZES:
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        img = np.stack([xx / w * 120, yy / h * 120, (xx + yy) / (w + h) * 80], axis=-1)
        for _ in range(40):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 120)
            img += (((xx - cx) ** 2 + (yy - cy) ** 2) < r * r)[..., None] * rng.uniform(-60, 90, 3)
        img += rng.normal(0, 6, img.shape)
        cv2.imwrite(
            str(folder / f"{w}x{h}.jpg"),
            np.clip(img, 0, 255).astype(np.uint8),
            [cv2.IMWRITE_JPEG_QUALITY, 90],
        )


def _annotations(
    rng: np.random.Generator,
    image_ids: np.ndarray,
    widths: np.ndarray,
    heights: np.ndarray,
    n_objects: np.ndarray,
    first_id: int,
) -> list[dict[str, Any]]:
    """COCO annotations (polygons; crowds as uncompressed RLE) for a chunk of images."""
    img = np.repeat(np.arange(len(image_ids)), n_objects)
    n = len(img)
    w, h = widths[img].astype(np.float64), heights[img].astype(np.float64)
    side = np.clip(np.exp(rng.normal(np.log(0.12), 0.9, n)), 0.015, 0.95) * np.sqrt(w * h)
    aspect = np.exp(rng.normal(0, 0.6, n) / 2)
    bw, bh = np.clip(side * aspect, 2, w), np.clip(side / aspect, 2, h)
    x0, y0 = rng.uniform(0, 1, n) * (w - bw), rng.uniform(0, 1, n) * (h - bh)
    n_points = rng.integers(8, 33, n)
    p_max = 32
    angle = (
        2
        * np.pi
        * (np.arange(p_max)[None, :] + rng.uniform(0, 0.8, (n, p_max)))
        / n_points[:, None]
    )
    radius = rng.uniform(0.55, 1.0, (n, p_max))
    px = np.round(x0[:, None] + bw[:, None] / 2 * (1 + radius * np.cos(angle)), 2)
    py = np.round(y0[:, None] + bh[:, None] / 2 * (1 + radius * np.sin(angle)), 2)
    valid = np.arange(p_max)[None, :] < n_points[:, None]
    bx0, by0 = np.where(valid, px, np.inf).min(1), np.where(valid, py, np.inf).min(1)
    bx1, by1 = np.where(valid, px, -np.inf).max(1), np.where(valid, py, -np.inf).max(1)
    vx, vy = np.where(valid, px, 0), np.where(valid, py, 0)
    nxt = (np.arange(p_max)[None, :] + 1) % n_points[:, None]  # shoelace over each polygon
    area = 0.5 * np.abs(
        (vx * np.take_along_axis(vy, nxt, 1) - np.take_along_axis(vx, nxt, 1) * vy).sum(1)
    )
    crowd = rng.random(n) < 0.009
    category = rng.choice(80, n, p=_category_p()) + 1
    anns = []
    xy = np.stack([px, py], axis=-1).reshape(n, 2 * p_max).tolist()
    for i in range(n):
        image_h, image_w = int(heights[img[i]]), int(widths[img[i]])
        if crowd[i]:  # a box region as uncompressed RLE, as COCO's crowd annotations are
            cx0, cy0 = int(bx0[i]), int(by0[i])
            cw, ch = max(1, int(bx1[i]) - cx0), max(1, int(by1[i]) - cy0)
            counts = [cx0 * image_h + cy0] + [ch, image_h - ch] * (cw - 1) + [ch]
            counts.append(image_h * image_w - sum(counts))
            seg: Any = {"counts": counts, "size": [image_h, image_w]}
            box, ann_area = [cx0, cy0, cw, ch], float(cw * ch)
        else:
            seg = [xy[i][: 2 * int(n_points[i])]]
            box = [
                round(float(bx0[i]), 2),
                round(float(by0[i]), 2),
                round(float(bx1[i] - bx0[i]), 2),
                round(float(by1[i] - by0[i]), 2),
            ]
            ann_area = round(float(area[i]), 2)
        anns.append(
            {
                "segmentation": seg,
                "area": ann_area,
                "iscrowd": int(crowd[i]),
                "image_id": int(image_ids[img[i]]),
                "bbox": box,
                "category_id": int(category[i]),
                "id": first_id + i,
            }
        )
    return anns


def _category_p() -> np.ndarray:
    p = 1.0 / np.arange(1, 81) ** 1.1
    return p / p.sum()


def write_split(
    path: Path,
    image_dir: Path,
    shared: Path,
    n_images: int,
    mean_objects: float,
    first_image_id: int,
    seed: int,
) -> dict[str, int]:
    """One COCO instances file of ``n_images`` images (links to the shared files), streamed."""
    from boxcaseg.data.classes import COCO80_CLASSES

    rng = np.random.default_rng(seed)
    probs = np.array([p for _, p in SIZES])
    which = rng.choice(len(SIZES), n_images, p=probs / probs.sum())
    widths = np.array([SIZES[k][0][0] for k in which])
    heights = np.array([SIZES[k][0][1] for k in which])
    ids = np.arange(first_image_id, first_image_id + n_images)
    # 1% of the images empty, the others 1 + a long-tailed count (mean: COCO's 7.27 overall)
    extra = mean_objects - 1
    n_objects = 1 + rng.negative_binomial(1.6, 1.6 / (1.6 + extra), n_images)
    n_objects[rng.random(n_images) < 0.01] = 0
    n_objects = np.minimum(n_objects, 93)
    image_dir.mkdir(parents=True, exist_ok=True)
    for k, image_id in zip(which, ids):
        link = image_dir / f"{image_id:012d}.jpg"
        if not link.is_symlink():
            w, h = SIZES[k][0]
            os.symlink(shared / f"{w}x{h}.jpg", link)
    images = [
        {
            "license": 1,
            "file_name": f"{i:012d}.jpg",
            "height": int(h),
            "width": int(w),
            "id": int(i),
        }
        for i, w, h in zip(ids, widths, heights)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    n_written = 0
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(
            '{"info": {"description": "synthetic COCO-scale set (BoxCaseg benchmark)"}, '
            '"licenses": [], "images": '
        )
        fh.write(json.dumps(images))
        fh.write(', "annotations": [')
        for start in range(0, n_images, 4000):
            stop = min(n_images, start + 4000)
            anns = _annotations(
                rng,
                ids[start:stop],
                widths[start:stop],
                heights[start:stop],
                n_objects[start:stop],
                first_id=1 + n_written + seed * 10**8,
            )
            if anns:
                fh.write((", " if n_written else "") + json.dumps(anns)[1:-1])
            n_written += len(anns)
        fh.write('], "categories": ')
        fh.write(
            json.dumps(
                [
                    {"supercategory": "thing", "id": i + 1, "name": name}
                    for i, name in enumerate(COCO80_CLASSES)
                ]
            )
        )
        fh.write("}")
    return {"images": n_images, "instances": n_written}


def generate(root: Path, fraction: float, seed: int = 0) -> dict[str, Any]:
    """The whole synthetic set under ``root`` (reused when its manifest says it is complete)."""
    import cv2

    manifest = root / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())
    start = time.perf_counter()
    _shared_images(root / "shared", seed)
    mean = COCO_INSTANCES / COCO_IMAGES / 0.99  # 1% of the images are empty
    train = write_split(
        root / "annotations/instances_train.json",
        root / "images",
        root / "shared",
        round(COCO_IMAGES * fraction),
        mean,
        1,
        seed,
    )
    val = write_split(
        root / "annotations/instances_val.json",
        root / "images",
        root / "shared",
        max(1, round(COCO_VAL_IMAGES * fraction)),
        mean,
        10**7,
        seed + 1,
    )
    for sub in ("DUTS-TR-Image", "DUTS-TR-Mask"):
        (root / "salient" / sub).mkdir(parents=True, exist_ok=True)
    for k in range(2):
        pixels = cv2.imread(str(root / "shared/640x480.jpg"))[100 * k : 100 * k + 200, :200]
        mask = np.zeros((200, 200), np.uint8)
        mask[40:160, 50:150] = 255
        cv2.imwrite(str(root / f"salient/DUTS-TR-Image/s{k}.jpg"), pixels)
        cv2.imwrite(str(root / f"salient/DUTS-TR-Mask/s{k}.png"), mask)
    info = {
        "fraction": fraction,
        "train": train,
        "val": val,
        "generate_seconds": round(time.perf_counter() - start, 1),
    }
    manifest.write_text(json.dumps(info, indent=1))
    return info


# --- the stages (each run in its own process by `run_stage`) ---------------------------------------


def stub_segmentor() -> Any:
    """What Stage 3 needs of a model, at almost no cost: one 1x1 conv on the crops."""
    import torch

    class StubSegmentor(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 1, 1)

        def data_preprocessor(self, data: dict[str, Any], training: bool = False) -> dict[str, Any]:
            return {"inputs": torch.stack(data["inputs"]).float() / 255.0}

        def salient_logits(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    return StubSegmentor().eval()


def stage_work(name: str, root: Path, work: Path, input_size: int) -> dict[str, Any]:
    """One stage's work (timed by the caller); returns what it counted."""
    from boxcaseg.data.coco import load_json

    data = {
        "train": {
            "format": "coco",
            "annotations": str(root / "annotations/instances_train.json"),
            "images": str(root / "images"),
        },
        "val": {
            "format": "coco",
            "annotations": str(root / "annotations/instances_val.json"),
            "images": str(root / "images"),
        },
    }
    if name == "import":
        from boxcaseg.data.prepare import prepare_dataset

        summary = prepare_dataset(
            {
                "splits": data,
                "salient": {"format": "duts", "root": str(root / "salient")},
                "decode_images": False,
            },
            work / "data",
        )
        train = summary["splits"]["train"]
        return {"images": train["images"], "instances": train["annotations"]}
    if name == "derive":
        from boxcaseg.cli import main

        section = {**data["train"], "decode_images": False, "keep_categories": []}
        code = main(
            ["derive", "--section", json.dumps(section), "--out-dir", str(work / "derived")]
        )
        counts = json.loads((work / "derived/manifest.json").read_text())["counts"]
        return {"exit": code, **counts}
    if name == "proxy":
        import torch

        from boxcaseg.proxy import proxy_masks_file

        torch.set_num_threads(1)  # the stub's tensor ops; the 2 DataLoader workers read images
        out = proxy_masks_file(
            stub_segmentor(),
            work / "data/train.boxes.json",
            work / "proxy/proxy_raw.json",
            input_size=input_size,
            batch_size=32,
            num_workers=2,
            checkpoint="stub",
            progress=False,
        )
        return {"images": out["images"], "instances": out["instances"], "input_size": input_size}
    if name == "merge":
        from boxcaseg.cli import main

        code = main(
            [
                "merge",
                "--section",
                json.dumps({"drop_threshold": 0.95}),
                "--raw",
                str(work / "proxy/proxy_raw.json"),
                "--gt",
                str(work / "data/train.gt.json"),
                "--out",
                str(work / "proxy/proxy_masks.json"),
                "--quality-out",
                str(work / "proxy/quality.json"),
                "--overlays-out",
                str(work / "proxy/overlays.png"),
                "--table-out",
                str(work / "proxy/quality_table.png"),
            ]
        )
        quality = load_json(work / "proxy/quality.json")
        return {
            "exit": code,
            "instances": quality["instances"],
            "kept": quality["kept"],
            "proxy_miou_star": round(
                quality.get("quality", {}).get("proxy", {}).get("miou_star", 0.0), 4
            ),
        }
    if name == "box_masks":
        from boxcaseg.cli import main

        return {
            "exit": main(
                [
                    "box-masks",
                    "--boxes",
                    str(work / "data/train.boxes.json"),
                    "--out",
                    str(work / "data/train.boxmask.json"),
                ]
            )
        }
    if name == "det_dataset":
        from mmdet.registry import DATASETS
        from mmengine.registry import init_default_scope

        import boxcaseg.mm.det  # noqa: F401  (registers the dataset and transforms)
        from boxcaseg.detection import dataset_fields
        from boxcaseg.engine import load_config

        cfg = load_config("det/maskrcnn_r50_fpn_1x_coco.py")
        cfg.train_dataloader.dataset.update(dataset_fields(str(work / "proxy/proxy_masks.json")))
        init_default_scope("mmdet")
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        samples = [dataset[i] for i in range(min(4, len(dataset)))]
        return {
            "images": len(dataset),
            "instances_first_samples": sum(len(s["data_samples"].gt_instances) for s in samples),
        }
    raise ValueError(name)


def _stage_main(argv: list[str]) -> int:
    """``scale.py --stage NAME ROOT WORK INPUT_SIZE OUT_JSON``: run one stage, write its figures."""
    name, root, work, input_size, out = argv

    def cpu() -> float:  # this process and its (waited for) children: the DataLoader workers
        own, kids = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    start, cpu_start = time.perf_counter(), cpu()
    result = stage_work(name, Path(root), Path(work), int(input_size))
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["cpu_seconds"] = round(cpu() - cpu_start, 2)  # over the same span as `seconds`
    result["self_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["children_peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    )
    Path(out).write_text(json.dumps(result))
    return 0


def run_stage(name: str, root: Path, work: Path, input_size: int) -> dict[str, Any]:
    """One stage in a fresh process; its process tree's resident memory sampled meanwhile."""
    import psutil

    out = work / f".{name}.json"
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    log = open(work / f"{name}.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--stage",
            name,
            str(root),
            str(work),
            str(input_size),
            str(out),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    parent, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            total = 0
            for p in tree:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, total)
        except psutil.Error:
            pass
        time.sleep(0.1)
    wall = time.perf_counter() - start
    log.close()
    if proc.returncode != 0:
        tail = (work / f"{name}.log").read_text()[-3000:]
        raise RuntimeError(f"scale benchmark stage {name} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(out.read_text())
    result["process_seconds"] = round(wall, 2)
    result["peak_rss_mb"] = max(round(peak / 2**20), result["self_peak_rss_mb"])
    return result


def bench_scale(
    tmp: Path,
    fractions: list[float],
    data_dir: str | None = None,
    input_size: int = 64,
    stages: list[str] | None = None,
) -> dict[str, Any]:
    """Generate, then run every stage at each fraction; the figures and the extrapolation."""
    runs: dict[str, Any] = {}
    for fraction in fractions:
        key = f"{fraction:g}"
        root = Path(data_dir or tmp) / f"coco_x{key}"
        work = Path(tmp) / f"work_x{key}"
        work.mkdir(parents=True, exist_ok=True)
        print(f"-- {100 * fraction:g}% of COCO: generating under {root}", flush=True)
        info = generate(root, fraction)
        runs[key] = {"data": info, "stages": {}}
        for name in stages or STAGES:
            print(f"   {name} ...", end="", flush=True)
            runs[key]["stages"][name] = fig = run_stage(name, root, work, input_size)
            print(f" {fig['seconds']} s, peak RSS {fig['peak_rss_mb']} MB", flush=True)
    return {
        "fractions": fractions,
        "input_size": input_size,
        "runs": runs,
        "extrapolation": extrapolate(runs, fractions),
    }


def extrapolate(runs: dict[str, Any], fractions: list[float]) -> dict[str, Any]:
    """From the smallest run, linearly in the number of instances (the images scale alike), to
    the largest run; the measured growth against that prediction."""
    small, large = min(fractions), max(fractions)
    a, b = runs[f"{small:g}"]["stages"], runs[f"{large:g}"]["stages"]
    size = (
        runs[f"{large:g}"]["data"]["train"]["instances"]
        / runs[f"{small:g}"]["data"]["train"]["instances"]
    )
    out = {}
    for name in a:
        if name not in b:
            continue
        t_small, t_large = a[name]["seconds"], b[name]["seconds"]
        c_small, c_large = a[name].get("cpu_seconds"), b[name].get("cpu_seconds")
        predicted = t_small * size
        out[name] = {
            "seconds_small": t_small,
            "seconds_large": t_large,
            "linear_prediction_large": round(predicted, 1),
            # measured / linear prediction: <= 1 means it grew at most linearly (fixed costs
            # such as imports make it < 1)
            "growth_vs_linear": round(t_large / predicted, 3) if predicted else None,
            # the same in CPU seconds (the stage's process and its workers): less sensitive to
            # what else runs on the machine
            "cpu_seconds_small": c_small,
            "cpu_seconds_large": c_large,
            "cpu_growth_vs_linear": (
                round(c_large / (c_small * size), 3) if c_small and c_large else None
            ),
            "size_ratio": round(size, 3),
            "peak_rss_mb_small": a[name]["peak_rss_mb"],
            "peak_rss_mb_large": b[name]["peak_rss_mb"],
        }
    return out


def scale_table(bench: dict[str, Any]) -> str:
    fractions = bench["fractions"]
    small, large = min(fractions), max(fractions)
    lo, hi = f"{100 * small:g}%", f"{100 * large:g}%"
    lines = [
        f"{'stage':<12} {'time ' + lo:>10} {'time ' + hi:>10} {'linear pred.':>12} "
        f"{'growth':>7} {'CPU growth':>10} {'peak RSS ' + lo:>15} {'peak RSS ' + hi:>16}"
    ]
    for name, row in bench["extrapolation"].items():
        cpu = row.get("cpu_growth_vs_linear")
        lines.append(
            f"{name:<12} {row['seconds_small']:>9.1f}s {row['seconds_large']:>9.1f}s "
            f"{row['linear_prediction_large']:>11.1f}s {row['growth_vs_linear']:>7.2f} "
            f"{cpu if cpu is not None else '-':>10} "
            f"{row['peak_rss_mb_small']:>12} MB {row['peak_rss_mb_large']:>13} MB"
        )
    info = bench["runs"][f"{large:g}"]["data"]
    ratio = next(iter(bench["extrapolation"].values()))["size_ratio"]
    lines.append(
        f"(largest run: {info['train']['images']} train images, {info['train']['instances']} "
        f"instances. linear pred. = time at {lo} x {ratio:g} (the instances' ratio); growth = "
        f"time at {hi} / linear pred., CPU growth the same in CPU seconds (the stage's "
        f"process and workers); <= 1: at most linear)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--stage":
        sys.exit(_stage_main(sys.argv[2:]))
    sys.exit("run it through benchmarks/run.py --only scale")
