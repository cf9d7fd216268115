"""Salient sets -> a salient index (Stage 1 importer): image + mask folders paired by file
stem (``folders``), or the DUTS layout (``duts``: DUTS-TR-Image + DUTS-TR-Mask, or the TE
pair). Returns ``(index, report)``; the caller decides when to raise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from boxcaseg.data.images import (
    IMAGE_SUFFIXES,
    ImageProblem,
    binarize_mask,
    image_size,
    is_binary,
    list_images,
    load_gray,
    mask_size_problem,
)
from boxcaseg.data.report import DataError, ValidationReport
from boxcaseg.masks import mask_to_box

DUTS_FOLDERS = (("DUTS-TR-Image", "DUTS-TR-Mask"), ("DUTS-TE-Image", "DUTS-TE-Mask"))


def find_duts_folders(root: str | Path) -> tuple[Path, Path]:
    root = Path(root)
    for image_sub, mask_sub in DUTS_FOLDERS:
        if (root / image_sub).is_dir() and (root / mask_sub).is_dir():
            return root / image_sub, root / mask_sub
    raise DataError(
        f"{root}: no DUTS layout here (expected "
        + " or ".join(f"{a}/ + {b}/" for a, b in DUTS_FOLDERS)
        + ")"
    )


def import_salient(
    image_dir: str | Path, mask_dir: str | Path, *, strict: bool = False, decode_images: bool = True
) -> tuple[dict[str, Any], ValidationReport]:
    """Pair images and masks by file stem. Masks are binarised at half their scale (0/1 or
    0/255); a non-binary mask is binarised with a warning, an empty one dropped."""
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    report = ValidationReport(source=f"{image_dir} + {mask_dir} (salient)", strict=strict)
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            report.error(str(folder), "", "folder does not exist")
    report.raise_if_errors()
    images, masks = list_images(image_dir), list_images(mask_dir)
    # an empty folder is named: it is the one the user must fill or point elsewhere
    for folder, found, what in ((image_dir, images, "images"), (mask_dir, masks, "masks")):
        if not found:
            report.error(
                str(folder),
                "",
                f"the {what} folder holds no image file ({', '.join(IMAGE_SUFFIXES)})",
            )
    report.raise_if_errors()
    for stem in sorted(set(masks) - set(images)):
        report.warn(str(masks[stem]), stem, "mask without an image", "dropped")
    entries = []
    n_nonbinary = 0
    for stem, path in sorted(images.items()):
        mask_path = masks.get(stem)
        if mask_path is None:
            report.warn(str(path), stem, "salient image with no mask", "dropped")
            continue
        try:
            width, height = image_size(path, decode=decode_images)
        except ImageProblem as err:
            report.error(str(path), stem, str(err))
            continue
        try:
            values = load_gray(mask_path)
        except OSError as err:
            report.error(str(mask_path), stem, f"corrupt or unreadable mask ({err})")
            continue
        problem = mask_size_problem(values, width, height)
        if problem:
            report.error(str(mask_path), stem, problem)
            continue
        if not is_binary(values):
            n_nonbinary += 1
            report.warn(
                str(mask_path),
                stem,
                f"non-binary mask (values {sorted(np.unique(values).tolist())[:6]}...)",
                "binarised",
            )
        mask = binarize_mask(values)
        if not mask.any():
            report.warn(str(mask_path), stem, "empty mask (no foreground pixel)", "dropped")
            continue
        entries.append(
            {
                "id": len(entries) + 1,
                "image": str(path.resolve()),
                "mask": str(mask_path.resolve()),
                "width": width,
                "height": height,
                "bbox": mask_to_box(mask).tolist(),
            }
        )
    if not entries:
        report.error(str(image_dir), "", "empty salient set: no usable image + mask pair")
    report.counts.update(
        {
            "pairs": len(entries),
            "images_seen": len(images),
            "masks_seen": len(masks),
            "non_binary_masks": n_nonbinary,
        }
    )
    return {"salient": entries}, report


def import_duts(root: str | Path, **kwargs: Any) -> tuple[dict[str, Any], ValidationReport]:
    image_dir, mask_dir = find_duts_folders(root)
    return import_salient(image_dir, mask_dir, **kwargs)
