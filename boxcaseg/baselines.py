"""The baselines' masks files (docs/method.md, Stage 5's variants ``box`` and ``grabcut``): the
box-as-mask file and the GrabCut masks of every box, over the pure :mod:`boxcaseg.masks` and
:mod:`boxcaseg.grabcut`. The GrabCut masks are then merged as in Stage 4
(:func:`boxcaseg.merge_drop.run_merge`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from boxcaseg.data.coco import Coco, annotations_by_image, load_json, save_json
from boxcaseg.masks import box_rle, rle_encode


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
        pixels = cv2.imread(
            str(image_path(boxes, img)), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        )
        if pixels is None:
            raise FileNotFoundError(image_path(boxes, img))
        return {
            a["id"]: rle_encode(grabcut_mask(pixels, a["bbox"], spec)) for a in by_image[img["id"]]
        }

    masks: dict[int, dict[str, Any]] = {}
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for result in tqdm(
            pool.map(one_image, images),
            total=len(images),
            desc="grabcut",
            unit="img",
            mininterval=2.0,
        ):
            masks.update(result)
    anns = [
        {**a, "segmentation": masks[a["id"]]} if a["id"] in masks else dict(a)
        for a in boxes["annotations"]
    ]
    return {**boxes, "annotations": anns}
