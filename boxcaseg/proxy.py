"""Stage 3, proxy-mask inference (method.md, Stage 3), batched across instances and images.

For every (non-crowd) box of a split: crop the exact box, resize to ``input_size``, predict
with the SALIENT head, sigmoid, min-max normalise per instance, resize back to the box window
and threshold, paste into the image frame. (Resizing the normalised probabilities before the
threshold, rather than the binary mask after it, gives the same mask up to resampling and
avoids blocky edges on boxes larger than ``input_size``.)

The same code runs on CPU or GPU: it follows the model's device. Image reading and cropping
run in DataLoader workers; crops from several images are stacked into one batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from boxcaseg.crops import Window, box_window, crop_resize, paste_into_image, resize_to_window

EPS = 1e-6


def minmax_normalize(probs: torch.Tensor) -> torch.Tensor:
    """Per-sample min-max normalisation of (N, H, W) maps to [0, 1]; a flat map becomes 0."""
    flat = probs.flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    hi = flat.max(dim=1).values[:, None, None]
    span = hi - lo
    return torch.where(span > EPS, (probs - lo) / span.clamp(min=EPS), torch.zeros_like(probs))


@dataclass
class ImageCrops:
    image_id: int
    height: int
    width: int
    ann_ids: list[int]
    windows: list[Window]
    crops: np.ndarray  # (K, S, S, 3) uint8, BGR like mmcv's loader


class _ImageCropDataset(torch.utils.data.Dataset):
    """One item per image: its exact-box crops (read and cropped in a worker)."""

    def __init__(self, coco: dict[str, Any], input_size: int) -> None:
        from boxcaseg.data.coco import image_path

        self.input_size = input_size
        anns: dict[int, list[dict[str, Any]]] = {}
        for ann in coco["annotations"]:
            if not ann.get("iscrowd", 0):
                anns.setdefault(ann["image_id"], []).append(ann)
        self.items = [(img, str(image_path(coco, img)), anns.get(img["id"], []))
                      for img in coco["images"]]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> ImageCrops:
        import mmcv

        img, path, anns = self.items[index]
        h, w = img["height"], img["width"]
        windows = [box_window(a["bbox"], w, h) for a in anns]
        if anns:
            image = mmcv.imread(path)  # BGR, as in training
            crops = np.stack([crop_resize(image, win, self.input_size) for win in windows])
        else:
            crops = np.zeros((0, self.input_size, self.input_size, 3), np.uint8)
        return ImageCrops(img["id"], h, w, [a["id"] for a in anns], windows, crops)


@torch.no_grad()
def predict_batch(model: torch.nn.Module, crops: np.ndarray) -> np.ndarray:
    """(K, S, S, 3) uint8 crops -> (K, S, S) float32 min-max normalised salient probabilities."""
    inputs = [torch.from_numpy(c).permute(2, 0, 1).contiguous() for c in crops]
    data = model.data_preprocessor({"inputs": inputs}, training=False)
    probs = model.salient_logits(data["inputs"]).sigmoid()[:, 0]
    return minmax_normalize(probs).float().cpu().numpy()


def iter_proxy_masks(model: torch.nn.Module, coco: dict[str, Any], *, input_size: int = 320,
                     batch_size: int = 16, threshold: float = 0.5, num_workers: int = 0,
                     progress: bool = True, windows: bool = False
                     ) -> Iterator[tuple[int, list[int], Any]]:
    """Yield ``(image_id, ann_ids, masks)`` per image, masks a (K, H, W) bool stack in the
    image frame, in the image order of ``coco``. Instances of several images share batches.
    With ``windows``, ``masks`` is instead a list of ``(window, mask)`` pairs, each mask the
    (y1-y0, x1-x0) part of the image-frame mask inside its box window (outside it the mask
    is empty), so that no image-sized array is made per instance."""
    from tqdm import tqdm

    loader = torch.utils.data.DataLoader(
        _ImageCropDataset(coco, input_size), batch_size=None, shuffle=False,
        num_workers=num_workers)
    n_instances = sum(len(anns) for _, _, anns in loader.dataset.items)
    bar = tqdm(total=n_instances, unit="inst", desc="proxy masks", disable=not progress,
               mininterval=2.0)
    pending: deque[ImageCrops] = deque()  # images not yet emitted, in order
    waiting: list[np.ndarray] = []  # crops not yet predicted (the tail of pending's crops)
    predicted: list[np.ndarray] = []  # probabilities of the head of pending's crops

    def run(count: int) -> None:
        batch = np.stack(waiting[:count])
        del waiting[:count]
        predicted.extend(predict_batch(model, batch))
        bar.update(count)

    def finished() -> Iterator[tuple[int, list[int], np.ndarray]]:
        while pending and len(pending[0].ann_ids) <= len(predicted):
            item = pending.popleft()
            k = len(item.ann_ids)
            if windows:
                masks: Any = [(win, resize_to_window(predicted[j], win) > threshold)
                              for j, win in enumerate(item.windows)]
            else:
                masks = np.zeros((k, item.height, item.width), dtype=bool)
                for j in range(k):
                    masks[j] = paste_into_image(predicted[j], item.windows[j], item.height,
                                                item.width) > threshold
            del predicted[:k]
            yield item.image_id, item.ann_ids, masks

    for item in loader:
        pending.append(item)
        waiting.extend(item.crops)
        while len(waiting) >= batch_size:  # only full batches until the end
            run(batch_size)
        yield from finished()
    if waiting:
        run(len(waiting))
    yield from finished()
    bar.close()
