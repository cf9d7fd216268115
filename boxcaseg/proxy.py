"""Stage 3, proxy masks, on files (docs/method.md, Stage 3): what the workflow's ``proxy_masks``
and ``gather_proxy_masks`` rules run, over the inference of :mod:`boxcaseg.proxy_inference`.

Stage 3 writes ``proxy_raw.json``: the box-only training file with each instance's raw
(unmerged) proxy mask as RLE (:func:`run_proxy_inference`; sharded, part files that
:func:`gather_proxy_parts` joins). Stage 4 merges them (:mod:`boxcaseg.merge_drop`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from boxcaseg.data.coco import Coco, load_json, save_json
from boxcaseg.masks import rle_encode_window
from boxcaseg.proxy_inference import iter_proxy_masks, model_input_size, shard_of


def proxy_part_path(out_json: str | Path, index: int, count: int) -> Path:
    out_json = Path(out_json)
    return out_json.with_name(f"{out_json.stem}.part{index}-of-{count}.json")


def run_proxy_inference(
    checkpoint: str,
    boxes_json: str,
    out_json: str,
    *,
    input_size: int | None = None,
    batch_size: int = 16,
    threshold: float | None = None,
    num_workers: int = 2,
    device: str | None = None,
    config: str | None = None,
    precision: str = "fp32",
    post_workers: int = 1,
    shard: tuple[int, int] | None = None,
) -> dict[str, Any]:
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
        model,
        boxes_json,
        proxy_part_path(out_json, *shard) if world > 1 else out_json,
        input_size=input_size or model_input_size(model),
        batch_size=batch_size,
        threshold=model.test_cfg["threshold"] if threshold is None else threshold,
        num_workers=num_workers,
        checkpoint=str(checkpoint),
        precision=precision,
        post_workers=post_workers,
        shard=shard,
    )
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


def proxy_masks_file(
    model: Any,
    boxes_json: str | Path,
    out_json: str | Path,
    *,
    input_size: int,
    batch_size: int = 16,
    threshold: float = 0.5,
    num_workers: int = 2,
    checkpoint: str = "",
    precision: str = "fp32",
    post_workers: int = 1,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Stage 3's file step with a built model: every box's proxy mask as RLE, encoded from its
    box window (no image-sized mask per instance, in ``post_workers`` threads), written into
    the box file as loaded (no copy of it). With ``shard``, only that shard's images, as a
    part file (see :func:`run_proxy_inference`)."""
    coco = load_json(boxes_json)
    images = {img["id"]: img for img in coco["images"]}

    def encode(image_id: int, ann_ids: list[int], window_masks: Any) -> list[tuple[int, Any]]:
        h, w = images[image_id]["height"], images[image_id]["width"]
        return [
            (ann_id, rle_encode_window(mask, window, h, w))
            for ann_id, (window, mask) in zip(ann_ids, window_masks)
        ]

    masks_by_ann: dict[int, dict[str, Any]] = {}
    for encoded in iter_proxy_masks(
        model,
        coco,
        input_size=input_size,
        batch_size=batch_size,
        threshold=threshold,
        num_workers=num_workers,
        progress=progress,
        precision=precision,
        post_workers=post_workers,
        windows=True,
        postprocess=encode,
        images=shard_of(coco["images"], *shard) if shard else None,
    ):
        masks_by_ann.update(encoded)
    settings = {
        "checkpoint": checkpoint,
        "input_size": input_size,
        "threshold": threshold,
        "flip": bool(getattr(model, "test_cfg", {}).get("flip")),
        "head": "salient",
        "precision": precision,
    }
    summary = {"instances": len(masks_by_ann), "device": str(next(model.parameters()).device)}
    if shard is None:
        save_json(proxy_file(coco, masks_by_ann, settings), out_json)
        return {**summary, "images": len(coco["images"])}
    save_json(
        {
            "shard": list(shard),
            "settings": settings,
            "masks": {str(k): v for k, v in masks_by_ann.items()},
        },
        out_json,
    )
    return {**summary, "images": len(coco["images"][shard[0] :: shard[1]]), "shard": list(shard)}


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


def gather_proxy_parts(
    boxes_json: str | Path, parts: list[str | Path], out_json: str | Path
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
    missing = [
        a["id"] for a in boxes["annotations"] if not a.get("iscrowd", 0) and a["id"] not in masks
    ]
    if missing:
        raise DataError(
            f"{boxes_json}: {len(missing)} boxes have no proxy mask in the parts "
            f"{[str(p) for p in parts]} (first: {missing[:5]})"
        )
    save_json(proxy_file(boxes, masks, settings or {}), out_json)
    return {"instances": len(masks), "parts": len(parts)}
