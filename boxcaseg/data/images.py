"""Image files: size and integrity checks, loading as RGB, binary mask loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageProblem(Exception):
    """An image that is missing or cannot be decoded; the message says which."""


def image_size(path: str | Path, *, decode: bool = True) -> tuple[int, int]:
    """``(width, height)`` of an image file. With ``decode`` the whole file is decoded, so a
    truncated or corrupt file is caught here rather than in the middle of training."""
    path = Path(path)
    if not path.is_file():
        raise ImageProblem("missing image file")
    try:
        with Image.open(path) as im:
            size = im.size
            if decode:
                im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageProblem(f"corrupt or unreadable image ({err})") from err
    return int(size[0]), int(size[1])


def load_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_gray(path: str | Path) -> np.ndarray:
    """(H, W) uint8, a mask or palette-index PNG read as stored (no palette mapping)."""
    with Image.open(path) as im:
        if im.mode == "P":
            return np.asarray(im)
        return np.asarray(im.convert("L"))


def binarize_mask(values: np.ndarray) -> np.ndarray:
    """A salient mask as bool: values > 0.5 of the mask's scale (0/1 masks or 0/255 masks)."""
    scale = 1 if values.max(initial=0) <= 1 else 255
    return values > scale / 2


def is_binary(values: np.ndarray) -> bool:
    """True when the mask holds only 0 and one other value (1 or 255)."""
    uniq = np.unique(values)
    return len(uniq) <= 2 and set(uniq.tolist()) <= {0, 1, 255} and not {1, 255} <= set(uniq.tolist())


def list_images(folder: str | Path) -> dict[str, Path]:
    """Image files in a folder by stem (non-recursive)."""
    return {p.stem: p for p in sorted(Path(folder).iterdir())
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
