"""The embedded demo dataset: a seeded generator of small, honest scenes (no download).

Box set (COCO JSON + images, train and val): textured, noisy backgrounds with several
non-rectangular objects of four classes (so a box is a poor mask), of varied sizes, that
overlap and occlude each other. True masks are the visible (modal) parts, as in COCO; boxes
are their tight boxes.

Salient set (DUTS layout: DUTS-TR-Image/*.jpg + DUTS-TR-Mask/*.png): single dominant objects
with exact masks, drawn from a wider family of shapes (random blobs too), generated from a
disjoint seed stream, so no salient image is a box-set image.

Each image has its own child seed, so the first N images stay the same when N grows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from boxcaseg.data.coco import save_json
from boxcaseg.masks import mask_to_box, rle_encode

DEMO_CLASSES = ("ellipse", "triangle", "star", "cross")
_STREAM = {"train": 0, "val": 1, "salient": 2}  # disjoint seed streams per split


@dataclass(frozen=True)
class DemoSpec:
    seed: int = 0
    image_size: int = 128
    train_images: int = 120
    val_images: int = 40
    salient_images: int = 160
    min_objects: int = 2
    max_objects: int = 5
    min_object_size: int = 18
    max_object_size: int = 56
    min_visible_fraction: float = 0.35  # occluded instances below this are removed


def _texture(
    rng: np.random.Generator, size: int, base: np.ndarray, contrast: float, cells: int
) -> np.ndarray:
    """Colour ``base`` modulated by smooth noise, stripes and pixel noise: (S, S, 3) float."""
    low = cv2.resize(
        rng.normal(0, 1, (cells, cells, 3)).astype(np.float32),
        (size, size),
        interpolation=cv2.INTER_CUBIC,
    )
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.6)
    stripes = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))[..., None]
    img = base[None, None, :] + contrast * (18 * low + rng.uniform(0, 20) * stripes)
    return img + rng.normal(0, 8, (size, size, 3))


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(30, 225, 3)


def _polygon(points: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, -s], [s, c]]).T


def _shape_mask(
    kind: str, rng: np.random.Generator, size: int, cx: float, cy: float, radius: float
) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi)
    if kind == "ellipse":
        mask = np.zeros((size, size), np.uint8)
        axes = (max(2, int(radius)), max(2, int(radius * rng.uniform(0.45, 0.9))))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, float(np.degrees(angle)), 0, 360, 1, -1)
        return mask.astype(bool)
    if kind == "triangle":
        t = np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.3, 0.3, 3)
        pts = np.stack([np.cos(t), np.sin(t)], 1) * radius
    elif kind == "star":
        n = 5
        t = np.arange(2 * n) * np.pi / n
        r = np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.38, 0.5)) * radius
        pts = np.stack([np.cos(t) * r, np.sin(t) * r], 1)
    elif kind == "cross":
        a, b = radius, radius * rng.uniform(0.28, 0.4)
        pts = np.array(
            [
                [-b, -a],
                [b, -a],
                [b, -b],
                [a, -b],
                [a, b],
                [b, b],
                [b, a],
                [-b, a],
                [-b, b],
                [-a, b],
                [-a, -b],
                [-b, -b],
            ]
        )
    elif kind == "blob":  # salient set only: a random star-convex blob
        t = np.sort(rng.uniform(0, 2 * np.pi, 9))
        r = radius * rng.uniform(0.55, 1.0, 9)
        pts = np.stack([np.cos(t) * r, np.sin(t) * r], 1)
    else:
        raise ValueError(f"unknown shape {kind}")
    return _polygon(_rotate(pts, angle) + np.array([cx, cy]), size)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    return _texture(
        rng,
        size,
        _random_colour(rng),
        contrast=rng.uniform(0.6, 1.4),
        cells=int(rng.integers(3, 8)),
    )


def _paint(canvas: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    size = canvas.shape[0]
    fill = _texture(
        rng,
        size,
        _random_colour(rng),
        contrast=rng.uniform(0.3, 0.9),
        cells=int(rng.integers(2, 5)),
    )
    canvas[mask] = fill[mask]
    # a darker rim, as real objects often have a visible contour
    edge = mask & ~cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    canvas[edge] = canvas[edge] * rng.uniform(0.55, 0.9)


def make_scene(rng: np.random.Generator, spec: DemoSpec) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One box-set image and its instances (category index, visible mask), painted back to
    front, so later objects occlude earlier ones."""
    size = spec.image_size
    canvas = _background(rng, size)
    painted: list[tuple[int, np.ndarray]] = []
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        cls = int(rng.integers(len(DEMO_CLASSES)))
        radius = rng.uniform(spec.min_object_size, spec.max_object_size) / 2
        cx, cy = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
        mask = _shape_mask(DEMO_CLASSES[cls], rng, size, cx, cy, radius)
        if mask.sum() < 30:
            continue
        _paint(canvas, mask, rng)
        painted.append((cls, mask))
    instances = []
    for i, (cls, full) in enumerate(painted):
        visible = full.copy()
        for _, later in painted[i + 1 :]:
            visible &= ~later
        if visible.sum() >= spec.min_visible_fraction * full.sum() and visible.sum() >= 20:
            instances.append({"category": cls, "mask": visible})
    return np.clip(canvas, 0, 255).astype(np.uint8), instances


def make_salient(rng: np.random.Generator, spec: DemoSpec) -> tuple[np.ndarray, np.ndarray]:
    """One salient image: a single dominant object of any shape (blobs included), exact mask.
    Sizes and positions vary widely, objects may run off the frame, as in DUTS and as in the
    exact-box crops the salient head sees at inference."""
    size = spec.image_size
    canvas = _background(rng, size)
    kind = rng.choice(list(DEMO_CLASSES) + ["blob", "blob"])
    radius = rng.uniform(0.25, 0.6) * size
    cx, cy = rng.uniform(0.3 * size, 0.7 * size, 2)
    mask = _shape_mask(str(kind), rng, size, cx, cy, radius)
    _paint(canvas, mask, rng)
    return np.clip(canvas, 0, 255).astype(np.uint8), mask


def _child_rngs(seed: int, stream: str, count: int) -> list[np.random.Generator]:
    seq = np.random.SeedSequence([seed, _STREAM[stream]])
    return [np.random.default_rng(s) for s in seq.spawn(count)]


def _write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok = cv2.imwrite(
        str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
    )
    if not ok:
        raise OSError(f"could not write {path}")


def write_box_split(
    out_dir: Path, split: str, count: int, spec: DemoSpec, progress: Callable[[Any], Any] = iter
) -> Path:
    coco: dict[str, Any] = {
        "info": {"description": f"BoxCaseg demo scenes, {split}", "seed": spec.seed},
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(DEMO_CLASSES)],
    }
    for image_id, rng in enumerate(progress(_child_rngs(spec.seed, split, count)), start=1):
        image, instances = make_scene(rng, spec)
        file_name = f"{split}_{image_id:05d}.jpg"
        _write_rgb(out_dir / "images" / split / file_name, image)
        coco["images"].append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": spec.image_size,
                "height": spec.image_size,
            }
        )
        for inst in instances:
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": inst["category"] + 1,
                    "bbox": mask_to_box(inst["mask"]).tolist(),
                    "area": float(inst["mask"].sum()),
                    "iscrowd": 0,
                    "segmentation": rle_encode(inst["mask"]),
                }
            )
    path = out_dir / "annotations" / f"{split}.json"
    save_json(coco, path)
    return path


def write_salient_set(
    out_dir: Path, count: int, spec: DemoSpec, progress: Callable[[Any], Any] = iter
) -> Path:
    root = out_dir / "salient"
    (root / "DUTS-TR-Mask").mkdir(parents=True, exist_ok=True)
    for k, rng in enumerate(progress(_child_rngs(spec.seed, "salient", count)), start=1):
        image, mask = make_salient(rng, spec)
        _write_rgb(root / "DUTS-TR-Image" / f"sal_{k:05d}.jpg", image)
        cv2.imwrite(str(root / "DUTS-TR-Mask" / f"sal_{k:05d}.png"), mask.astype(np.uint8) * 255)
    return root


def write_demo_dataset(
    out_dir: str | Path, spec: DemoSpec = DemoSpec(), progress: Callable[[Any], Any] = iter
) -> dict[str, str]:
    """Write the whole demo dataset under ``out_dir``, with ``manifest.json``: the ``data``
    config section that imports it (Stage 1 imports it like any user dataset)."""
    out_dir = Path(out_dir)
    train = write_box_split(out_dir, "train", spec.train_images, spec, progress)
    val = write_box_split(out_dir, "val", spec.val_images, spec, progress)
    salient = write_salient_set(out_dir, spec.salient_images, spec, progress)
    manifest = {
        "splits": {
            "train": {
                "format": "coco",
                "annotations": str(train),
                "images": str(out_dir / "images" / "train"),
            },
            "val": {
                "format": "coco",
                "annotations": str(val),
                "images": str(out_dir / "images" / "val"),
            },
        },
        "salient": {"format": "duts", "root": str(salient)},
    }
    save_json(manifest, out_dir / "manifest.json", indent=1)
    return manifest
