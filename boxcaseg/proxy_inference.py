"""Stage 3's inference (docs/method.md, Stage 3), batched across instances and images: a proxy
mask inside every box with the SALIENT head of a Stage 2 model. Below the stages: Stage 3's file
steps (:mod:`boxcaseg.proxy`), the mIoU* hook of Stage 2 (:mod:`boxcaseg.mm.seg.hooks`),
``masks-from-boxes`` and the benchmarks all run this code, so what the hook measures is the
quality of the masks Stage 3 writes.

For every (non-crowd) box: crop the exact box, resize to ``input_size``, predict with the
SALIENT head, sigmoid, min-max normalise per instance, resize back to the box window and
threshold, paste into the image frame. (Resizing the normalised probabilities before the
threshold, rather than the binary mask after it, gives the same mask up to resampling and
avoids blocky edges on boxes larger than ``input_size``.)

The same code runs on CPU or GPU: it follows the model's device. Image reading and cropping
run in DataLoader workers; crops from several images are stacked into one batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from boxcaseg.crops import Window, box_window, context_window, crop_resize, resize_to_window
from boxcaseg.normalize import normalize_probabilities
from boxcaseg.quality import instance_ious, miou_star_report

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}

# On a CPU a forward pass pays for its activations' memory traffic: large batches of large
# crops fall out of the caches and run slower per crop than small ones (benchmarks/run.py
# --only proxy: HRNet-W18-small at 320 px, batch 32 ran at 0.59x the batch-1 speed). So on a
# CPU the batch is capped at this many input pixels (32 crops of 64 px); GPUs take it whole.
CPU_BATCH_PIXELS = 32 * 64 * 64


def effective_batch_size(batch_size: int, input_size: int, device: torch.device) -> int:
    """Crops per forward pass: ``proxy.batch_size``, capped on a CPU (see CPU_BATCH_PIXELS)."""
    if device.type == "cuda":
        return batch_size
    return max(1, min(batch_size, CPU_BATCH_PIXELS // (input_size * input_size)))


def shard_of(items: list[Any], index: int, count: int) -> list[Any]:
    """Shard ``index`` of ``count``: every count-th item from ``index`` (images of similar
    sizes spread evenly over the shards)."""
    if not 0 <= index < count:
        raise ValueError(f"shard {index} of {count} does not exist")
    return items[index::count]


@dataclass
class ImageCrops:
    image_id: int
    height: int
    width: int
    ann_ids: list[int]
    windows: list[Window]  # each box's window: where its mask goes
    crops: torch.Tensor  # (K, S, S, 3) uint8, BGR like mmcv's loader
    crop_windows: list[Window]  # what was cropped: the box, or the box with context

    def pin_memory(self) -> ImageCrops:  # the DataLoader's pin_memory calls this
        self.crops = self.crops.pin_memory()
        return self


class _ImageCropDataset(torch.utils.data.Dataset):
    """One item per image: its box crops, each the exact box or the box grown by ``context``
    of its size per side (read and cropped in a worker)."""

    def __init__(
        self,
        coco: dict[str, Any],
        input_size: int,
        images: list[dict[str, Any]] | None = None,
        context: float = 0.0,
    ) -> None:
        from boxcaseg.data.coco import annotations_by_image, image_path

        self.input_size = input_size
        self.context = context
        anns = annotations_by_image(coco["annotations"], skip_crowd=True)
        self.items = [
            (img, str(image_path(coco, img)), anns.get(img["id"], []))
            for img in (coco["images"] if images is None else images)
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> ImageCrops:
        import mmcv

        img, path, anns = self.items[index]
        h, w = img["height"], img["width"]
        windows = [box_window(a["bbox"], w, h) for a in anns]
        crop_windows = (
            [context_window(a["bbox"], w, h, self.context) for a in anns]
            if self.context
            else windows
        )
        if anns:
            # BGR, stored pixels (EXIF orientation ignored), as the training pipeline loads them
            image = mmcv.imread(path, flag="color_ignore_orientation")
            crops = np.stack([crop_resize(image, win, self.input_size) for win in crop_windows])
        else:
            crops = np.zeros((0, self.input_size, self.input_size, 3), np.uint8)
        return ImageCrops(
            img["id"], h, w, [a["id"] for a in anns], windows, torch.from_numpy(crops), crop_windows
        )


class _BatchStager:
    """Crops of several images gathered into one input batch. On a GPU the batch is assembled
    in a pinned (page-locked) host buffer and copied asynchronously: the copy runs at full
    bandwidth and the host thread goes on to queue the forward pass. (One buffer suffices:
    the previous batch's copy has finished when its results came back to the host.)"""

    def __init__(self, device: torch.device, batch_size: int, size: int) -> None:
        self.device = device
        self.pinned = (
            torch.empty((batch_size, size, size, 3), dtype=torch.uint8).pin_memory()
            if device.type == "cuda"
            else None
        )

    def to_device(self, crops: list[torch.Tensor]) -> torch.Tensor:
        if self.pinned is None:
            return torch.stack(crops).to(self.device)
        batch = self.pinned[: len(crops)]
        torch.stack(crops, out=batch)
        return batch.to(self.device, non_blocking=True)


@torch.no_grad()
def predict_batch(
    model: torch.nn.Module, crops: torch.Tensor, precision: str = "fp32"
) -> np.ndarray:
    """(K, S, S, 3) uint8 crops (on any device) -> (K, S, S) float32 salient probabilities,
    normalised as the model's ``test_cfg.normalize`` says (min-max per crop by default). ``precision`` fp16 / bf16 runs the forward under autocast (the
    normalisation stays in float32)."""
    dtype = PRECISIONS[precision]
    inputs = list(crops.permute(0, 3, 1, 2))
    data = model.data_preprocessor({"inputs": inputs}, training=False)
    device_type = data["inputs"].device.type
    with torch.autocast(
        device_type=device_type, dtype=dtype or torch.float32, enabled=dtype is not None
    ):
        logits = model.salient_logits(data["inputs"])
    probs = logits.float().sigmoid()[:, 0]
    how = getattr(model, "test_cfg", {}).get("normalize", "minmax")
    return normalize_probabilities(probs, how).cpu().numpy()


def paste_masks(
    item: ImageCrops, probs: list[np.ndarray], threshold: float, windows: bool = False
) -> Any:
    """One image's crop probabilities back into its frame: (K, H, W) bool masks, or with
    ``windows`` a list of (window, mask inside the window) pairs. A crop taken with context
    is resized to its crop window and cut back to its box: the mask never leaves the box."""
    in_box = []
    for j, (win, crop_win) in enumerate(zip(item.windows, item.crop_windows)):
        mask = resize_to_window(probs[j], crop_win) > threshold
        if crop_win != win:
            mask = mask[win[1] - crop_win[1] : win[3] - crop_win[1],
                        win[0] - crop_win[0] : win[2] - crop_win[0]]  # fmt: skip
        in_box.append((win, mask))
    if windows:
        return in_box
    masks = np.zeros((len(item.ann_ids), item.height, item.width), dtype=bool)
    for j, ((x0, y0, x1, y1), mask) in enumerate(in_box):
        masks[j, y0:y1, x0:x1] = mask
    return masks


def iter_proxy_masks(
    model: torch.nn.Module,
    coco: dict[str, Any],
    *,
    input_size: int = 320,
    batch_size: int = 16,
    threshold: float = 0.5,
    num_workers: int = 0,
    progress: bool = True,
    precision: str = "fp32",
    post_workers: int = 0,
    images: list[dict[str, Any]] | None = None,
    windows: bool = False,
    postprocess: Callable[[int, list[int], np.ndarray], Any] | None = None,
) -> Iterator[Any]:
    """Yield ``(image_id, ann_ids, masks)`` per image, masks a (K, H, W) bool stack in the
    image frame, in the image order of ``coco`` (or of ``images``, a shard of it). Instances
    of several images share batches.

    ``post_workers`` > 0 pastes, thresholds (and runs ``postprocess``, e.g. RLE encoding) in
    that many threads, so the thread that feeds the model never waits for them; with
    ``postprocess`` each yielded item is ``postprocess(image_id, ann_ids, masks)``.

    With ``windows``, ``masks`` is instead a list of ``(window, mask)`` pairs, each mask the
    (y1-y0, x1-x0) part of the image-frame mask inside its box window (outside it the mask
    is empty), so that no image-sized array is made per instance.
    """
    from concurrent.futures import Future, ThreadPoolExecutor

    from tqdm import tqdm

    device = next(model.parameters()).device
    batch_size = effective_batch_size(batch_size, input_size, device)
    # the model's test_cfg.context: crop each box with that much context per side
    context = float(getattr(model, "test_cfg", {}).get("context") or 0.0)
    dataset = _ImageCropDataset(coco, input_size, images, context)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    stager = _BatchStager(device, batch_size, input_size)
    n_instances = sum(len(anns) for _, _, anns in dataset.items)
    bar = tqdm(
        total=n_instances, unit="inst", desc="proxy masks", disable=not progress, mininterval=2.0
    )
    pending: deque[ImageCrops] = deque()  # images not yet handed to post-processing, in order
    waiting: list[torch.Tensor] = []  # crops not yet predicted (the tail of pending's crops)
    predicted: list[np.ndarray] = []  # probabilities of the head of pending's crops
    results: deque[Future | Any] = deque()  # post-processing, in image order
    pool = ThreadPoolExecutor(post_workers) if post_workers > 0 else None

    def finish(item: ImageCrops, probs: list[np.ndarray]) -> Any:
        masks = paste_masks(item, probs, threshold, windows)
        if postprocess is None:
            return item.image_id, item.ann_ids, masks
        return postprocess(item.image_id, item.ann_ids, masks)

    def flush() -> None:  # images whose crops are all predicted go to post-processing
        while pending and len(pending[0].ann_ids) <= len(predicted):
            item = pending.popleft()
            k = len(item.ann_ids)
            probs, predicted[:k] = predicted[:k], []
            results.append(pool.submit(finish, item, probs) if pool else finish(item, probs))

    def run(count: int) -> None:
        batch = stager.to_device(waiting[:count])
        del waiting[:count]
        predicted.extend(predict_batch(model, batch, precision))
        bar.update(count)
        flush()

    def ready(wait: bool) -> Iterator[Any]:
        while results and (wait or not isinstance(results[0], Future) or results[0].done()):
            head = results.popleft()
            yield head.result() if isinstance(head, Future) else head

    try:
        for item in loader:
            pending.append(item)
            waiting.extend(item.crops)
            while len(waiting) >= batch_size:  # only full batches until the end
                run(batch_size)
            flush()  # an image without boxes
            yield from ready(wait=False)
        if waiting:
            run(len(waiting))
        flush()
        yield from ready(wait=True)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
        bar.close()


def grade_in_true_boxes(
    model: torch.nn.Module,
    gt_coco: dict[str, Any],
    *,
    input_size: int,
    batch_size: int = 16,
    threshold: float | None = None,
) -> dict[str, Any]:
    """mIoU* of the model's masks predicted inside the true boxes of ``gt_coco`` (this
    module's Stage 3 inference, at the model's own ``test_cfg.threshold`` unless ``threshold``
    is given), next to the box-as-mask baseline: :func:`boxcaseg.quality.miou_star_report`."""
    if threshold is None:
        threshold = model.test_cfg["threshold"]
    predictions = iter_proxy_masks(
        model,
        gt_coco,
        input_size=input_size,
        batch_size=batch_size,
        threshold=threshold,
        progress=False,
    )
    return miou_star_report(gt_coco, instance_ious(gt_coco, predictions))


def model_input_size(model: Any) -> int:
    """The crop size a Stage 2 model predicts at: its config's ``infer_size`` (what its mIoU*
    used), 320 for a config without one."""
    return int(model.cfg.get("infer_size", 320))
