"""A box set and a DISJOINT salient set derived from one instance-segmentation dataset.

For real photos without a separate salient-object set (e.g. coco128-seg): images with one
dominant object become salient sources (the object cropped with a margin, its true mask as the
salient mask); every other image goes to the box-supervised train or val split. No image is in
both, so the box-supervised training never sees a true mask of its own images.

Writes the same layout as the demo generator: ``annotations/{train,val}.json`` (COCO, with
masks, file names relative to the source image folder), ``salient/DUTS-TR-{Image,Mask}/``, and
``manifest.json`` (the ``data`` section that imports all of it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from boxcaseg.data.coco import Coco, annotations_by_image, image_path, save_json
from boxcaseg.data.images import load_rgb
from boxcaseg.data.report import DataError
from boxcaseg.masks import segmentation_to_mask


@dataclass(frozen=True)
class DeriveSpec:
    val_fraction: float = 0.3
    salient_images: int = 30
    min_area_fraction: float = 0.08  # the dominant object covers at least this much of the image
    dominance: float = 2.0  # ... and is at least this many times larger than the next one
    margin: float = 0.15  # salient crop: the object's box grown by this fraction per side
    seed: int = 0
    # data.categories: images holding any of these classes are kept for the box splits (never
    # a salient source), so a class-filtered run loses none of its images to the salient set
    keep_categories: tuple[str, ...] = ()


def _dominant(
    anns: list[dict[str, Any]], image: dict[str, Any], spec: DeriveSpec
) -> dict[str, Any] | None:
    """The dominant object among one image's annotations (all of them, any kind), or None."""
    anns = [a for a in anns if not a.get("iscrowd") and a.get("segmentation")]
    if not anns:
        return None
    anns.sort(key=lambda a: a["area"], reverse=True)
    first = anns[0]
    if first["area"] < spec.min_area_fraction * image["width"] * image["height"]:
        return None
    if len(anns) > 1 and first["area"] < spec.dominance * anns[1]["area"]:
        return None
    return first


def dominant_instance(coco: Coco, image: dict[str, Any], spec: DeriveSpec) -> dict[str, Any] | None:
    """The image's dominant object (one image: scans the whole file; :func:`derive_sets`
    groups the annotations by image once instead)."""
    return _dominant([a for a in coco["annotations"] if a["image_id"] == image["id"]], image, spec)


def _subset(coco: Coco, image_ids: set[int], image_root: str) -> Coco:
    return {
        "info": {"image_root": image_root},
        "images": [i for i in coco["images"] if i["id"] in image_ids],
        "annotations": [a for a in coco["annotations"] if a["image_id"] in image_ids],
        "categories": coco["categories"],
    }


def derive_sets(coco: Coco, out_dir: str | Path, spec: DeriveSpec = DeriveSpec()) -> dict[str, Any]:
    """Split ``coco`` (an imported dataset with masks) into salient sources and train/val."""
    out_dir = Path(out_dir)
    rng = np.random.default_rng(spec.seed)
    kept_ids = {c["id"] for c in coco["categories"] if c["name"] in set(spec.keep_categories)}
    reserved = {a["image_id"] for a in coco["annotations"] if a["category_id"] in kept_ids}
    by_image = annotations_by_image(coco["annotations"])  # one pass: linear in images + annotations
    candidates = [
        (img, ann)
        for img in coco["images"]
        if img["id"] not in reserved
        and (ann := _dominant(by_image.get(img["id"], []), img, spec)) is not None
    ]
    del by_image
    order = rng.permutation(len(candidates))
    salient = [candidates[i] for i in order[: spec.salient_images]]
    if spec.salient_images and not salient:
        raise DataError(
            "no image has a dominant object to serve as a salient source: lower "
            "min_area_fraction / dominance"
        )
    salient_ids = {img["id"] for img, _ in salient}
    (out_dir / "salient/DUTS-TR-Image").mkdir(parents=True, exist_ok=True)
    (out_dir / "salient/DUTS-TR-Mask").mkdir(parents=True, exist_ok=True)
    for img, ann in salient:
        h, w = img["height"], img["width"]
        x, y, bw, bh = ann["bbox"]
        mx, my = spec.margin * bw, spec.margin * bh
        x0, y0 = int(max(0, np.floor(x - mx))), int(max(0, np.floor(y - my)))
        x1, y1 = int(min(w, np.ceil(x + bw + mx))), int(min(h, np.ceil(y + bh + my)))
        rgb = load_rgb(image_path(coco, img))[y0:y1, x0:x1]
        mask = segmentation_to_mask(ann["segmentation"], h, w)[y0:y1, x0:x1]
        stem = Path(img["file_name"]).stem
        cv2.imwrite(
            str(out_dir / f"salient/DUTS-TR-Image/{stem}.jpg"),
            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 95],
        )
        cv2.imwrite(str(out_dir / f"salient/DUTS-TR-Mask/{stem}.png"), mask.astype(np.uint8) * 255)

    rest = [img["id"] for img in coco["images"] if img["id"] not in salient_ids]
    rest = [rest[i] for i in rng.permutation(len(rest))]
    n_val = int(round(spec.val_fraction * len(rest)))
    val_ids, train_ids = set(rest[:n_val]), set(rest[n_val:])
    root = coco["info"]["image_root"]
    save_json(_subset(coco, train_ids, root), out_dir / "annotations/train.json")
    save_json(_subset(coco, val_ids, root), out_dir / "annotations/val.json")
    manifest = {
        "splits": {
            "train": {
                "format": "coco",
                "annotations": str(out_dir / "annotations/train.json"),
                "images": root,
            },
            "val": {
                "format": "coco",
                "annotations": str(out_dir / "annotations/val.json"),
                "images": root,
            },
        },
        "salient": {"format": "duts", "root": str(out_dir / "salient")},
        "counts": {
            "salient_sources": len(salient),
            "train_images": len(train_ids),
            "val_images": len(val_ids),
        },
    }
    save_json(manifest, out_dir / "manifest.json", indent=1)
    return manifest
