"""Stage 2's second round (optional, ``segmentation.second_round``): round 1's kept proxy masks
become salient images for a second Stage 2 training (docs/method.md, "Second round").

Round 1 is the usual Stage 2 -> Stage 3 -> Stage 4. Each proxy mask Stage 4 kept, on a box at
least ``min_side`` pixels wide and high, is cut out of its photo with ``context`` x the box's
size per side (the crop shows the object whole, centred, with some of its surroundings, as a
salient image does), and written as an image + mask pair beside the other salient images. The
second round trains Stage 2 again from its initial weights on the same boxes with this larger
salient set; its model makes the proxy masks the detector learns from. The salient head then
sees the classes of the box set, which the salient set (DAVIS videos, DUTS) may lack.

The crops keep the photo's stored pixels (EXIF orientation ignored, as Stage 2 and Stage 3
read them) and are written losslessly (PNG), so the pixels round 2 trains on are the ones
round 1 predicted on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from boxcaseg.crops import context_window
from boxcaseg.data.coco import annotations_by_image, image_path
from boxcaseg.data.report import DataError
from boxcaseg.masks import mask_to_box, rle_decode


def proxy_salient_entries(
    proxies: dict[str, Any],
    boxes: dict[str, Any],
    crops_dir: str | Path,
    *,
    context: float,
    min_side: int,
    first_id: int = 1,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Write each kept proxy mask's crop (``<ann id>.png``) and mask (``<ann id>.mask.png``,
    0 / 255) into ``crops_dir``; return their salient-index entries (the fields of Stage 1's
    salient index) and counts of what was taken and left out.

    ``proxies`` is Stage 4's proxy_masks.json (RLE masks in the image frame, ``proxy_kept``),
    ``boxes`` Stage 1's train.boxes.json (where the photos are)."""
    import mmcv

    crops_dir = Path(crops_dir)
    crops_dir.mkdir(parents=True, exist_ok=True)
    images = {img["id"]: img for img in boxes["images"]}
    counts = {"proxies": 0, "dropped_by_stage_4": 0, "smaller_than_min_side": 0, "empty": 0}
    entries: list[dict[str, Any]] = []
    by_image = annotations_by_image(proxies["annotations"], skip_crowd=True)
    for image_id, anns in by_image.items():
        img = images.get(image_id)
        if img is None:
            raise DataError(f"proxy masks: image id {image_id} is not in the box file")
        counts["proxies"] += len(anns)
        taken = []
        for ann in anns:
            if not ann.get("proxy_kept", True):
                counts["dropped_by_stage_4"] += 1
            elif min(ann["bbox"][2], ann["bbox"][3]) < min_side:
                counts["smaller_than_min_side"] += 1
            else:
                taken.append(ann)
        if not taken:
            continue
        path = image_path(boxes, img)
        photo = mmcv.imread(str(path), flag="color_ignore_orientation")
        if photo is None:
            raise DataError(f"{path}: unreadable image (image id {image_id})")
        height, width = photo.shape[:2]
        for ann in taken:
            mask = rle_decode(ann["segmentation"])
            if mask.shape != (height, width):
                raise DataError(
                    f"proxy masks: annotation {ann['id']} has a {mask.shape[1]}x{mask.shape[0]}"
                    f" mask, its image {path} is {width}x{height}"
                )
            x0, y0, x1, y1 = context_window(ann["bbox"], width, height, context)
            crop_mask = mask[y0:y1, x0:x1]
            if not crop_mask.any():
                counts["empty"] += 1
                continue
            image_file = crops_dir / f"{ann['id']}.png"
            mask_file = crops_dir / f"{ann['id']}.mask.png"
            cv2.imwrite(str(image_file), photo[y0:y1, x0:x1])
            cv2.imwrite(str(mask_file), crop_mask.astype(np.uint8) * 255)
            entries.append(
                {
                    "id": first_id + len(entries),
                    "image": str(image_file.resolve()),
                    "mask": str(mask_file.resolve()),
                    "width": x1 - x0,
                    "height": y1 - y0,
                    "bbox": mask_to_box(crop_mask).tolist(),
                    # the mask's pixel count: a changed round 1 mask changes the index (and
                    # with it Stage 2's fingerprint) even where its box stays the same
                    "area": int(crop_mask.sum()),
                    "source": f"round 1 proxy mask, annotation {ann['id']} of {path.name}",
                }
            )
    counts["taken"] = len(entries)
    return entries, counts


def second_round_salient(
    salient: dict[str, Any],
    proxies: dict[str, Any],
    boxes: dict[str, Any],
    crops_dir: str | Path,
    *,
    context: float,
    min_side: int,
) -> tuple[dict[str, Any], dict[str, int]]:
    """Stage 1's salient index with round 1's kept proxy masks appended (ids after its own)."""
    own = salient["salient"]
    first_id = max((entry["id"] for entry in own), default=0) + 1
    entries, counts = proxy_salient_entries(
        proxies, boxes, crops_dir, context=context, min_side=min_side, first_id=first_id
    )
    if not entries:
        raise DataError(
            "second round: no round 1 proxy mask qualifies as a salient image "
            f"({counts}); lower segmentation.second_round.min_side or merge.drop_threshold"
        )
    counts["salient_images"] = len(own)
    return {"salient": [*own, *entries]}, counts
