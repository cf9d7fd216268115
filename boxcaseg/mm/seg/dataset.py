"""The joint box + salient dataset of Stage 2, its crop transform and its batch sampler.

Each sample is tagged with ``sample_kind`` ('box' or 'salient'), carried to the model in the
data sample's metainfo, where it decides which losses apply.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.dataset import BaseDataset
from mmseg.registry import DATA_SAMPLERS, DATASETS, TRANSFORMS
from torch.utils.data import BatchSampler, Sampler

from boxcaseg.crops import CropJitter, box_label_in_window, crop_resize, sample_training_window
from boxcaseg.data.coco import annotations_by_image, image_path, load_json
from boxcaseg.data.images import binarize_mask, load_gray
from boxcaseg.masks import box_iou_matrix

BOX, SALIENT = "box", "salient"


def overlapping_instances(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """True for each box whose IoU with another box of the same image exceeds the threshold."""
    if len(boxes) < 2:
        return np.zeros(len(boxes), dtype=bool)
    iou = box_iou_matrix(boxes, boxes)
    np.fill_diagonal(iou, 0.0)
    return (iou > iou_threshold).any(axis=1)


@DATASETS.register_module()
class BoxSalientDataset(BaseDataset):
    """Box instances of a Stage 1 box-only COCO file plus the pairs of a salient index.

    Args:
        ann_file: ``<split>.boxes.json`` written by Stage 1 (crowd/ignore boxes are skipped).
        salient_file: ``salient.json`` written by Stage 1, or None for box samples only.
        overlap_iou: instances whose box has IoU above this with another box of the same
            image are flagged ``overlaps`` (used by :class:`KindRatioBatchSampler`).
    """

    METAINFO = {"classes": ("background", "object"), "palette": [[0, 0, 0], [255, 255, 255]]}

    def __init__(
        self,
        ann_file: str,
        salient_file: str | None = None,
        overlap_iou: float = 0.5,
        **kwargs: Any,
    ) -> None:
        self.salient_file = salient_file
        self.overlap_iou = overlap_iou
        super().__init__(ann_file=ann_file, **kwargs)

    def load_data_list(self) -> list[dict[str, Any]]:
        coco = load_json(self.ann_file)
        images = {img["id"]: img for img in coco["images"]}
        by_image = annotations_by_image(coco["annotations"], skip_crowd=True)
        data_list: list[dict[str, Any]] = []
        for image_id, anns in by_image.items():
            img = images[image_id]
            flags = overlapping_instances(np.array([a["bbox"] for a in anns]), self.overlap_iou)
            for ann, overlaps in zip(anns, flags):
                data_list.append(
                    {
                        "img_path": str(image_path(coco, img)),
                        "sample_kind": BOX,
                        "bbox": [float(v) for v in ann["bbox"]],
                        "ann_id": ann["id"],
                        "category_id": ann["category_id"],
                        "overlaps": bool(overlaps),
                        "seg_fields": [],
                    }
                )
        if self.salient_file:
            for entry in load_json(self.salient_file)["salient"]:
                data_list.append(
                    {
                        "img_path": entry["image"],
                        "mask_path": entry["mask"],
                        "bbox": entry.get("bbox"),
                        "sample_kind": SALIENT,
                        "overlaps": False,
                        "seg_fields": [],
                    }
                )
        self.sample_kinds = np.array([d["sample_kind"] for d in data_list])
        self.overlap_flags = np.array([d["overlaps"] for d in data_list], dtype=bool)
        self.category_ids = np.array([d.get("category_id", -1) for d in data_list])
        return data_list


@TRANSFORMS.register_module()
class BoxCasegCrop(BaseTransform):
    """Training sample of either kind, at ``crop_size x crop_size`` (docs/method.md, Stage 1).

    - box: jitter the box centre by U(-shift, shift) x half-size and scale each half-size by
      U(scale_min, scale_max), clip, crop, resize; label 1 inside the true box.
    - salient: resize the whole image to ``salient_resize``, random crop ``crop_size``,
      horizontal flip with probability ``flip_prob``; label = the exact mask. With
      probability ``salient_box_crop`` (0 in the paper) it is instead cropped like a box
      sample around its object's box (same jitter), so the salient head also learns from
      crops framed as the exact-box crops it sees at inference.
    ``box_flip``: flip box crops too (the paper flips salient images only).
    Sets ``img``, ``gt_seg_map`` (uint8 {0, 1}) and ``img_shape``.
    """

    def __init__(
        self,
        crop_size: int = 288,
        salient_resize: int = 320,
        center_shift: float = 0.25,
        scale_range: Sequence[float] = (0.5, 1.5),
        flip_prob: float = 0.5,
        box_flip: bool = False,
        salient_box_crop: float = 0.0,
    ) -> None:
        self.crop_size = crop_size
        self.salient_resize = salient_resize
        self.jitter = CropJitter(center_shift, float(scale_range[0]), float(scale_range[1]))
        self.flip_prob = flip_prob
        self.box_flip = box_flip
        self.salient_box_crop = salient_box_crop
        # numpy's global RNG on purpose: mmengine seeds it per dataloader worker and rank
        # (``randomness.seed``); a Generator made here would be copied identically into
        # every worker.
        self.rng = np.random

    def _box_sample(self, results: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        img = results["img"]
        h, w = img.shape[:2]
        window = sample_training_window(results["bbox"], w, h, self.rng, self.jitter)
        crop = crop_resize(img, window, self.crop_size)
        label = box_label_in_window(results["bbox"], window, self.crop_size)
        flip = self.box_flip and self.rng.random() < self.flip_prob
        return (crop[:, ::-1], label[:, ::-1]) if flip else (crop, label)

    def _salient_sample(self, results: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        img = results["img"]
        mask = binarize_mask(load_gray(results["mask_path"])).astype(np.uint8)
        if (
            self.salient_box_crop
            and results.get("bbox")
            and self.rng.random() < self.salient_box_crop
        ):
            h, w = img.shape[:2]
            window = sample_training_window(results["bbox"], w, h, self.rng, self.jitter)
            crop = crop_resize(img, window, self.crop_size)
            label = crop_resize(mask, window, self.crop_size, nearest=True)
            if self.rng.random() < self.flip_prob:
                crop, label = crop[:, ::-1], label[:, ::-1]
            return crop, label
        full = (0, 0, img.shape[1], img.shape[0])
        big = crop_resize(img, full, self.salient_resize)
        big_mask = crop_resize(mask, full, self.salient_resize, nearest=True)
        off = self.salient_resize - self.crop_size
        y0, x0 = (int(v) for v in self.rng.randint(0, off + 1, 2)) if off > 0 else (0, 0)
        crop = big[y0 : y0 + self.crop_size, x0 : x0 + self.crop_size]
        label = big_mask[y0 : y0 + self.crop_size, x0 : x0 + self.crop_size]
        if self.rng.random() < self.flip_prob:
            crop, label = crop[:, ::-1], label[:, ::-1]
        return crop, label

    def transform(self, results: dict[str, Any]) -> dict[str, Any]:
        if results["sample_kind"] == BOX:
            crop, label = self._box_sample(results)
        else:
            crop, label = self._salient_sample(results)
        results["img"] = np.ascontiguousarray(crop)
        results["gt_seg_map"] = np.ascontiguousarray(label).astype(np.uint8)
        results["seg_fields"] = ["gt_seg_map"]
        results["img_shape"] = crop.shape[:2]
        return results


def class_keep_probabilities(
    category_ids: np.ndarray, is_box: np.ndarray, threshold: float
) -> np.ndarray:
    """Per sample: 1 for salient samples and boxes of classes holding at most ``threshold`` of
    the boxes, sqrt(threshold / f) for a class holding the fraction f > threshold."""
    keep = np.ones(len(category_ids), dtype=np.float64)
    boxes = category_ids[is_box]
    if boxes.size == 0:
        return keep
    classes, counts = np.unique(boxes, return_counts=True)
    fraction = dict(zip(classes.tolist(), (counts / boxes.size).tolist(), strict=True))
    for k in np.flatnonzero(is_box):
        keep[k] = min(1.0, float(np.sqrt(threshold / fraction[int(category_ids[k])])))
    return keep


@DATA_SAMPLERS.register_module()
class KindRatioBatchSampler(BatchSampler):
    """Batches with a fixed number of box samples (the rest salient), or uniform mixing.

    It consumes the index stream of the wrapped sampler (use mmengine's ``InfiniteSampler``:
    training is iteration-based), so distributed ranks stay disjoint, and routes indices into
    a box bucket and a salient bucket. With ``box_per_batch=None`` (VOC) batches are formed in
    stream order, i.e. box and salient samples mixed uniformly; with e.g. ``box_per_batch=22``
    (COCO: 22 box + 10 salient of 32) the GLOBAL batch, all ranks together, holds exactly that
    many box samples: each rank takes its share (``22 // world + 1`` on the first
    ``22 % world`` ranks, ``22 // world`` on the others) of its own ``batch_size`` samples.
    Surplus indices of the kind whose bucket is full are passed over (the infinite stream
    brings them back later).

    ``seed``: the skip decisions' random stream (per rank); None takes the wrapped sampler's
    seed. ``overlap_skip_prob``: box instances flagged ``overlaps`` by the dataset (IoU above its
    ``overlap_iou`` with another box) are skipped with this probability each time they come
    up (docs/method.md: 0.75 for COCO, off for VOC).

    ``class_balance``: None (every box as often as the stream brings it), or a class frequency
    t: a box of a class holding a fraction f > t of the boxes is kept with probability
    sqrt(t / f) each time it comes up (LVIS's repeat-factor rule turned into skips), so a
    dominant class (persons: a third of COCO's boxes) no longer fills most box samples.
    """

    def __init__(
        self,
        sampler: Sampler,
        batch_size: int,
        box_per_batch: int | None = None,
        overlap_skip_prob: float = 0.0,
        drop_last: bool = True,
        seed: int | None = None,
        class_balance: float | None = None,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        dataset = sampler.dataset  # type: ignore[attr-defined]
        if not dataset._fully_initialized:
            dataset.full_init()
        self.is_box = dataset.sample_kinds == BOX
        self.overlaps = dataset.overlap_flags
        rank = int(getattr(sampler, "rank", 0))
        world_size = int(getattr(sampler, "world_size", 1))
        if box_per_batch is not None:
            if not 0 <= box_per_batch <= batch_size * world_size:
                raise ValueError(
                    f"box_per_batch={box_per_batch} must be within [0, "
                    f"{batch_size * world_size}] (the global batch)"
                )
            box_per_batch = box_per_batch // world_size + (
                1 if rank < box_per_batch % world_size else 0
            )
            box_per_batch = min(box_per_batch, batch_size)
            if box_per_batch > 0 and not self.is_box.any():
                raise ValueError("box_per_batch > 0 but the dataset has no box samples")
            if box_per_batch < batch_size and self.is_box.all():
                raise ValueError("the batch asks for salient samples but the dataset has none")
        self.box_per_batch = box_per_batch  # this rank's share
        self.overlap_skip_prob = overlap_skip_prob
        self.keep_prob = (
            class_keep_probabilities(dataset.category_ids, self.is_box, class_balance)
            if class_balance
            else None
        )
        # mmengine builds batch samplers without a seed: take the wrapped sampler's, which the
        # runner seeds from ``randomness.seed`` (config.yaml: segmentation.seed)
        if seed is None:
            seed = int(getattr(sampler, "seed", 0) or 0)
        self.seed, self.rank = seed, rank
        self._held: Iterator[list[int]] | None = None
        self.restart()

    def restart(self) -> None:
        """The skip decisions' random stream back to its start (a resumed run replays the
        index stream from the start, indices only: see boxcaseg.mm.loops)."""
        self.rng = np.random.default_rng([self.seed, self.rank])

    def hold_iterator(self, batches: Iterator[list[int]]) -> None:
        """Make the next ``iter(self)`` continue ``batches`` (an iterator of this sampler
        advanced past the batches a resumed run already trained on), partly filled box and
        salient buckets included, so the resumed stream equals the uninterrupted one."""
        self._held = batches

    def _skipped(self, idx: int) -> bool:
        if (
            self.keep_prob is not None
            and self.keep_prob[idx] < 1.0
            and self.rng.random() >= self.keep_prob[idx]
        ):
            return True
        return bool(
            self.overlap_skip_prob
            and self.overlaps[idx]
            and self.rng.random() < self.overlap_skip_prob
        )

    def __iter__(self) -> Iterator[list[int]]:
        held, self._held = self._held, None
        if held is not None:
            yield from held
            return
        yield from self._batches()

    def _batches(self) -> Iterator[list[int]]:
        if self.box_per_batch is None:
            batch: list[int] = []
            for idx in self.sampler:
                if self._skipped(idx):
                    continue
                batch.append(idx)
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
            if batch and not self.drop_last:
                yield batch
            return
        want_box, want_sal = self.box_per_batch, self.batch_size - self.box_per_batch
        boxes: list[int] = []
        salient: list[int] = []
        for idx in self.sampler:
            if self.is_box[idx]:
                if len(boxes) < want_box and not self._skipped(idx):
                    boxes.append(idx)
            elif len(salient) < want_sal:
                salient.append(idx)
            if len(boxes) == want_box and len(salient) == want_sal:
                yield boxes + salient
                boxes, salient = [], []

    def __len__(self) -> int:
        return max(1, len(self.sampler) // self.batch_size)  # type: ignore[arg-type]
