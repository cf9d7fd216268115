"""File-level steps of Stages 3 and 4 (what the workflow's rules run), over the pure functions.

Stage 3 writes ``proxy_raw.json``: the box-only training file with each instance's raw
(unmerged) proxy mask as RLE. Stage 4 merges per image, scores and marks drops, and writes
``proxy_masks.json``: the box training file plus an RLE ``segmentation``, a ``confidence`` and a
``proxy_kept`` flag per annotation, the drop threshold recorded in ``info``. Masks are never
deleted. Crowd / ignore regions keep their box as mask (mmdet ignores them in training).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from boxcaseg.data.coco import Coco, annotations_by_image, load_json, save_json
from boxcaseg.masks import box_rle, rle_encode, rle_encode_window, rle_iou, segmentation_to_rle
from boxcaseg.merge import merge_and_score_many


def proxy_part_path(out_json: str | Path, index: int, count: int) -> Path:
    out_json = Path(out_json)
    return out_json.with_name(f"{out_json.stem}.part{index}-of-{count}.json")


def run_proxy_inference(checkpoint: str, boxes_json: str, out_json: str, *,
                        input_size: int | None = None, batch_size: int = 16,
                        threshold: float | None = None, num_workers: int = 2,
                        device: str | None = None, config: str | None = None,
                        precision: str = "fp32", post_workers: int = 1,
                        shard: tuple[int, int] | None = None) -> dict[str, Any]:
    """Stage 3 over a file. The model is the checkpoint's own (built from the config stored
    in it); ``input_size`` and ``threshold`` None = that config's ``infer_size`` and
    ``model.test_cfg.threshold`` (what its mIoU* used); its ``test_cfg.flip`` holds too.

    ``shard=(i, n)``: only every n-th image from the i-th, written as a PART file of
    ``{ann_id: rle}`` (:func:`gather_proxy_parts` joins the parts into the whole file). Under
    torchrun (WORLD_SIZE > 1) each rank takes its shard on its own device, and rank 0 gathers.
    """
    from boxcaseg.mm.seg.model import load_segmentor

    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    if shard is None and world > 1:
        shard = (rank, world)
        if device is None and torch_cuda_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    model = load_segmentor(checkpoint, device, config=config)
    summary = proxy_masks_file(
        model, boxes_json, proxy_part_path(out_json, *shard) if world > 1 else out_json,
        input_size=input_size or int(model.cfg.get("infer_size", 320)), batch_size=batch_size,
        threshold=model.test_cfg["threshold"] if threshold is None else threshold,
        num_workers=num_workers, checkpoint=str(checkpoint), precision=precision,
        post_workers=post_workers, shard=shard)
    if world > 1:  # every rank wrote its part; rank 0 joins them
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
        dist.barrier()
        if rank == 0:
            parts = [proxy_part_path(out_json, r, world) for r in range(world)]
            gather_proxy_parts(boxes_json, parts, out_json)
            for path in parts:
                path.unlink()
        dist.barrier()
    return summary


def proxy_masks_file(model: Any, boxes_json: str | Path, out_json: str | Path, *,
                     input_size: int, batch_size: int = 16, threshold: float = 0.5,
                     num_workers: int = 2, checkpoint: str = "", precision: str = "fp32",
                     post_workers: int = 1, shard: tuple[int, int] | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Stage 3's file step with a built model: every box's proxy mask as RLE, encoded from its
    box window (no image-sized mask per instance, in ``post_workers`` threads), written into
    the box file as loaded (no copy of it). With ``shard``, only that shard's images, as a
    part file (see :func:`run_proxy_inference`)."""
    from boxcaseg.proxy import iter_proxy_masks, shard_of

    coco = load_json(boxes_json)
    images = {img["id"]: img for img in coco["images"]}

    def encode(image_id: int, ann_ids: list[int], window_masks: Any) -> list[tuple[int, Any]]:
        h, w = images[image_id]["height"], images[image_id]["width"]
        return [(ann_id, rle_encode_window(mask, window, h, w))
                for ann_id, (window, mask) in zip(ann_ids, window_masks)]

    masks_by_ann: dict[int, dict[str, Any]] = {}
    for encoded in iter_proxy_masks(
            model, coco, input_size=input_size, batch_size=batch_size, threshold=threshold,
            num_workers=num_workers, progress=progress, precision=precision,
            post_workers=post_workers, windows=True, postprocess=encode,
            images=shard_of(coco["images"], *shard) if shard else None):
        masks_by_ann.update(encoded)
    settings = {"checkpoint": checkpoint, "input_size": input_size, "threshold": threshold,
                "flip": bool(getattr(model, "test_cfg", {}).get("flip")), "head": "salient",
                "precision": precision}
    summary = {"instances": len(masks_by_ann), "device": str(next(model.parameters()).device)}
    if shard is None:
        save_json(proxy_file(coco, masks_by_ann, settings), out_json)
        return {**summary, "images": len(coco["images"])}
    save_json({"shard": list(shard), "settings": settings,
               "masks": {str(k): v for k, v in masks_by_ann.items()}}, out_json)
    return {**summary, "images": len(coco["images"][shard[0]::shard[1]]), "shard": list(shard)}


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def proxy_file(boxes: Coco, masks_by_ann: dict[int, Any], settings: dict[str, Any]) -> Coco:
    """Stage 3's output: the box file with each instance's raw proxy mask as RLE (the box
    file's annotation dicts are updated in place: no copy of a COCO-sized file)."""
    for ann in boxes["annotations"]:
        if ann["id"] in masks_by_ann:
            ann["segmentation"] = masks_by_ann[ann["id"]]
    boxes.setdefault("info", {})["proxy"] = settings
    return boxes


def gather_proxy_parts(boxes_json: str | Path, parts: list[str | Path], out_json: str | Path
                       ) -> dict[str, Any]:
    """Join the part files of a sharded Stage 3 into the file an unsharded run writes (the
    same bytes). Every non-crowd box must have its mask in exactly one part."""
    from boxcaseg.data.report import DataError

    boxes = load_json(boxes_json)
    masks: dict[int, Any] = {}
    settings = None
    for path in parts:
        part = load_json(path)
        settings = settings or part["settings"]
        for key, rle in part["masks"].items():
            if int(key) in masks:
                raise DataError(f"{path}: annotation {key} is in two shards")
            masks[int(key)] = rle
    missing = [a["id"] for a in boxes["annotations"] if not a.get("iscrowd", 0) and a["id"] not in masks]
    if missing:
        raise DataError(f"{boxes_json}: {len(missing)} boxes have no proxy mask in the parts "
                        f"{[str(p) for p in parts]} (first: {missing[:5]})")
    save_json(proxy_file(boxes, masks, settings or {}), out_json)
    return {"instances": len(masks), "parts": len(parts)}


MERGE_CHUNK = 1_000  # instances merged in one batch: few numpy calls per instance, small
# temporaries (at 20k per batch the run arrays of noisy masks took a GB)


def merge_proxy_file(raw: Coco, drop_threshold: float,
                     description: str = "proxy masks (BoxCaseg Stage 4: merged, scored)", *,
                     inplace: bool = False) -> Coco:
    """Stage 4 over a whole file: merge per image, score, flag; returns the new COCO dict.

    ``raw`` is left as it is: the result holds new annotation dicts (sharing the unchanged
    values), or, with ``inplace``, ``raw``'s own annotations are updated (no second set of
    annotations in memory). The masks are merged on their RLE runs, many images per batch
    (:func:`boxcaseg.merge.merge_and_score_many`), equal to the full-frame merge per image.
    """
    images = {img["id"]: img for img in raw["images"]}
    annotations = raw["annotations"] if inplace else [dict(a) for a in raw["annotations"]]
    batch: list[tuple[dict[str, Any], int]] = []  # (annotation, its image's place in `sizes`)
    sizes: list[tuple[int, int]] = []

    def flush() -> None:
        if not batch:
            return
        result = merge_and_score_many(
            [segmentation_to_rle(a["segmentation"], *sizes[j]) for a, j in batch],
            np.array([a["bbox"] for a, _ in batch], dtype=np.float64).reshape(-1, 4),
            np.array([j for _, j in batch], dtype=np.int64),
            [h for h, _ in sizes], [w for _, w in sizes], drop_threshold)
        for (ann, _), rle, conf, kept in zip(batch, result.rles, result.confidence.tolist(),
                                              result.kept.tolist()):
            # `area` stays the box's (Stage 1): mmdet's CocoDataset skips area <= 0, and an
            # instance whose merged mask is empty must still train the RPN, box and class heads
            ann["segmentation"] = rle
            ann["confidence"] = round(conf, 6)
            ann["proxy_kept"] = kept
        batch.clear()
        sizes.clear()

    for image_id, anns in annotations_by_image(annotations).items():
        img = images[image_id]
        h, w = img["height"], img["width"]
        inst = []
        for ann in anns:
            if ann.get("iscrowd", 0):
                ann["segmentation"] = box_rle(ann["bbox"], h, w)
                ann["confidence"], ann["proxy_kept"] = 0.0, False
            else:
                inst.append(ann)
        if inst:
            if len(batch) + len(inst) > MERGE_CHUNK:
                flush()
            batch.extend((ann, len(sizes)) for ann in inst)
            sizes.append((h, w))
    flush()
    info = {**raw.get("info", {}), "drop_threshold": drop_threshold, "masks": description}
    if inplace:
        raw["info"] = info
        return raw
    return {**raw, "info": info, "annotations": annotations}


def proxy_quality(proxy: Coco, gt: Coco, drop_threshold: float) -> dict[str, Any]:
    """Proxy masks vs true masks: mean IoU overall, per class and by confidence bin, the same
    for the box-as-mask baseline, and how good the drop decision is (kept vs dropped IoU).
    IoUs are computed on RLE (pycocotools), exactly the pixel counts' intersection / union."""
    from boxcaseg.metrics import confidence_bins, miou_star, suggest_drop_threshold

    gt_anns = {a["id"]: a for a in gt["annotations"]}
    images = {img["id"]: img for img in gt["images"]}
    names = {c["id"]: c["name"] for c in gt["categories"]}
    n = len(proxy["annotations"])
    cats = np.zeros(n, dtype=np.int64)
    conf, iou, box_iou = (np.zeros(n, dtype=np.float64) for _ in range(3))
    rows = 0
    for ann in proxy["annotations"]:
        truth_ann = gt_anns.get(ann["id"])
        if ann.get("iscrowd", 0) or truth_ann is None or not truth_ann.get("segmentation"):
            continue
        img = images[ann["image_id"]]
        h, w = img["height"], img["width"]
        truth = segmentation_to_rle(truth_ann["segmentation"], h, w)
        cats[rows], conf[rows] = ann["category_id"], ann["confidence"]
        iou[rows] = rle_iou(segmentation_to_rle(ann["segmentation"], h, w), truth)
        box_iou[rows] = rle_iou(box_rle(ann["bbox"], h, w, as_bytes=True), truth)
        rows += 1
    if not rows:
        return {"instances": 0}
    cats, conf, iou, box_iou = cats[:rows], conf[:rows], iou[:rows], box_iou[:rows]
    kept = conf > drop_threshold
    return {
        "instances": rows,
        "drop_threshold": drop_threshold,
        "proxy": miou_star(iou, cats, names),
        "box_as_mask": miou_star(box_iou, cats, names),
        "kept_fraction": float(kept.mean()),
        "mean_iou_kept": float(iou[kept].mean()) if kept.any() else None,
        "mean_iou_dropped": float(iou[~kept].mean()) if (~kept).any() else None,
        "by_confidence": (bins := confidence_bins(conf, iou, box_iou)),
        "suggested_drop_threshold": suggest_drop_threshold(bins),
    }


def run_merge(raw_json: str | Coco, out_json: str, drop_threshold: float, *,
              gt_json: str | None = None, quality_json: str | None = None,
              description: str | None = None, overlays_png: str | None = None,
              overlay_images: int = 12) -> dict[str, Any]:
    """Stage 4 on files: merge + score + flag ``raw_json`` (a path, or the dict itself), write
    it, and grade it against the true masks when there are any; with ``overlays_png``, draw the
    first ``overlay_images`` images' masks from what is in memory (nothing is read twice).
    A dict passed in is left as it is; a file read here is merged in place (one copy)."""
    from_file = isinstance(raw_json, (str, Path))
    raw = load_json(raw_json) if from_file else raw_json
    merged = merge_proxy_file(raw, drop_threshold, *([description] if description else []),
                              inplace=from_file)
    del raw
    save_json(merged, out_json)
    summary: dict[str, Any] = {
        "instances": sum(1 for a in merged["annotations"] if not a.get("iscrowd", 0)),
        "kept": sum(1 for a in merged["annotations"] if a.get("proxy_kept")),
    }
    gt = load_json(gt_json) if gt_json and Path(gt_json).is_file() else None
    if gt is not None:
        summary["quality"] = proxy_quality(merged, gt, drop_threshold)
    if quality_json:
        save_json(summary, quality_json, indent=1)
    if overlays_png:
        from boxcaseg.figures import proxy_overlays

        proxy_overlays(merged, overlays_png, gt=gt, n_images=overlay_images,
                       drop_threshold=drop_threshold)
    return summary


def merge_table_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's Stage 4 table from :func:`run_merge`'s summary: the proxy masks (kept and
    dropped) and the box-as-mask baseline against the true masks, when there are any."""
    quality = summary.get("quality") or {}
    return [{"masks": "proxy (BoxCaseg)", "mIoU*": quality.get("proxy", {}).get("miou_star"),
             "mean IoU": quality.get("proxy", {}).get("mean_instance_iou"),
             "kept IoU": quality.get("mean_iou_kept"), "dropped IoU": quality.get("mean_iou_dropped"),
             "kept": summary["kept"], "instances": summary["instances"]},
            {"masks": "box as mask", "mIoU*": quality.get("box_as_mask", {}).get("miou_star"),
             "mean IoU": quality.get("box_as_mask", {}).get("mean_instance_iou")}]


def box_masks_file(boxes_json: str | Path, out_json: str | Path) -> None:
    """The box-as-mask baseline: each box's RLE straight from its corners (no image-sized
    mask per instance)."""
    coco = load_json(boxes_json)
    images = {img["id"]: img for img in coco["images"]}
    for ann in coco["annotations"]:
        img = images[ann["image_id"]]
        ann["segmentation"] = box_rle(ann["bbox"], img["height"], img["width"])
    coco.setdefault("info", {})["masks"] = "box-as-mask baseline: each box filled"
    save_json(coco, out_json)


def grabcut_raw_masks(boxes: Coco, spec: Any, threads: int = 1) -> Coco:
    """The box file with a GrabCut mask (RLE) for every non-crowd box; images in parallel
    (OpenCV releases the GIL inside grabCut)."""
    from concurrent.futures import ThreadPoolExecutor

    import cv2
    from tqdm import tqdm

    from boxcaseg.data.coco import image_path
    from boxcaseg.grabcut import grabcut_mask

    by_image = annotations_by_image(boxes["annotations"], skip_crowd=True)
    images = [img for img in boxes["images"] if img["id"] in by_image]

    def one_image(img: dict[str, Any]) -> dict[int, dict[str, Any]]:
        # stored pixels, EXIF orientation ignored (boxcaseg/data/images.py: the one policy)
        pixels = cv2.imread(str(image_path(boxes, img)),
                            cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if pixels is None:
            raise FileNotFoundError(image_path(boxes, img))
        return {a["id"]: rle_encode(grabcut_mask(pixels, a["bbox"], spec)) for a in by_image[img["id"]]}

    masks: dict[int, dict[str, Any]] = {}
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for result in tqdm(pool.map(one_image, images), total=len(images), desc="grabcut",
                           unit="img", mininterval=2.0):
            masks.update(result)
    anns = [{**a, "segmentation": masks[a["id"]]} if a["id"] in masks else dict(a)
            for a in boxes["annotations"]]
    return {**boxes, "annotations": anns}
