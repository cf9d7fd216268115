"""Image files: size and integrity checks, loading as RGB, binary mask loading.

EXIF orientation: one policy everywhere. Pixels are read AS STORED and the orientation tag
that phone cameras write is ignored, by every loader of every stage: PIL here (it never
applies the tag by itself), mmcv / OpenCV with ``color_ignore_orientation`` in the configs'
``LoadImageFromFile``, Stage 3's crops and GrabCut. COCO's own annotations are in stored
pixels, and so are those of any tool that reads the file as stored. An annotation that
evidently describes the ROTATED view (its declared size is the stored size transposed) is
refused by name in Stage 1 (:func:`orientation_hint`), as are YOLO labels on images with a
tag (their convention is the shown view): rotate such files once (``PIL.ImageOps.
exif_transpose``) and import them again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageProblem(Exception):
    """An image that is missing or cannot be decoded; the message says which."""


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a path the system refuses (a name too long, ...)."""
    try:
        return path.is_file()
    except OSError:
        return False


def image_size(path: str | Path, *, decode: bool = True) -> tuple[int, int]:
    """``(width, height)`` of an image file. With ``decode`` the whole file is decoded, so a
    truncated or corrupt file is caught here rather than in the middle of training."""
    path = Path(path)
    if not _is_file(path):
        raise ImageProblem("missing image file")
    try:
        with Image.open(path) as im:
            size = im.size
            if decode:
                im.load()
    except Image.DecompressionBombError as err:
        raise ImageProblem(f"image too large to decode safely ({err})") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageProblem(f"corrupt or unreadable image ({err})") from err
    return int(size[0]), int(size[1])


# EXIF orientation values: 1 = as stored; 2-4 mirror / rotate 180; 5-8 swap width and height
EXIF_ORIENTATION_TAG = 0x0112
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation tag of an image file (1 when it has none or it cannot be read)."""
    try:
        with Image.open(path) as im:
            value = im.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - no readable tag means no rotation to worry about
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def orientation_hint(path: str | Path, declared: tuple[int, int], stored: tuple[int, int]) -> str:
    """Text to add to a size-mismatch message when the declared ``(width, height)`` is the
    stored size transposed and the file carries a transposing EXIF orientation tag."""
    if declared != stored[::-1]:
        return ""
    orientation = exif_orientation(path)
    if orientation not in TRANSPOSING_ORIENTATIONS:
        return ""
    return (
        f" (its EXIF orientation tag {orientation} says: show it rotated, and the "
        "annotation describes that rotated view; BoxCaseg reads pixels as stored, the tag "
        "ignored, as COCO does: rotate the file once, e.g. PIL.ImageOps.exif_transpose, "
        "and drop the tag)"
    )


def load_rgb(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB, as stored (the EXIF orientation tag ignored: module docstring)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_gray(path: str | Path) -> np.ndarray:
    """(H, W) uint8, a mask or palette-index PNG read as stored (no palette mapping)."""
    with Image.open(path) as im:
        if im.mode == "P":
            return np.asarray(im)
        return np.asarray(im.convert("L"))


LOSSY_SUFFIXES = (".jpg", ".jpeg", ".webp")


def load_label_map(path: str | Path) -> tuple[np.ndarray, int]:
    """An instance-id or class-id PNG as stored: ``(values, bits)``, values an (H, W) int64
    array, ``bits`` 8 for 1-bit / 8-bit / palette images and 16 or 32 for wider ones (where
    255 is an ordinary value). A gray image saved as RGB(A) with equal channels is read as 8-bit
    gray; colour-coded maps, float images and lossy files raise :class:`ImageProblem`."""
    path = Path(path)
    if path.suffix.lower() in LOSSY_SUFFIXES:
        raise ImageProblem(
            f"a label map cannot be a lossy {path.suffix} file (compression "
            "changes the ids at object borders): save it as PNG"
        )
    if not _is_file(path):
        raise ImageProblem("missing label map file")
    try:
        with Image.open(path) as im:
            mode = im.mode
            if mode in ("1", "L", "P"):
                values, bits = np.asarray(im.convert("L") if mode == "1" else im), 8
                if mode == "1":
                    values = (values > 0).astype(np.uint8)
            elif mode.startswith("I;16") or mode == "I":
                values, bits = np.asarray(im), (32 if mode == "I" else 16)
            elif mode in ("RGB", "RGBA"):
                rgb = np.asarray(im.convert("RGB"))
                if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                    raise ImageProblem(
                        "a colour-coded label map: store the ids as gray values "
                        "(8-bit, 16-bit or palette PNG, one value per pixel)"
                    )
                values, bits = rgb[..., 0], 8
            else:
                raise ImageProblem(
                    f"a label map must be a one-channel integer image, got PIL mode {mode}"
                )
    except Image.DecompressionBombError as err:
        raise ImageProblem(f"label map too large to decode safely ({err})") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageProblem(f"corrupt or unreadable label map ({err})") from err
    values = values.astype(np.int64)
    if (values < 0).any():
        raise ImageProblem("a label map must not hold negative values")
    return values, bits


def mask_size_problem(values: np.ndarray, width: int, height: int) -> str | None:
    """Why a mask array does not fit its image (None when its shape is (height, width))."""
    if values.shape == (height, width):
        return None
    return f"mask is {values.shape[1]}x{values.shape[0]} but the image is {width}x{height}"


def binarize_mask(values: np.ndarray) -> np.ndarray:
    """A salient mask as bool: values > 0.5 of the mask's scale (0/1 masks or 0/255 masks)."""
    scale = 1 if values.max(initial=0) <= 1 else 255
    return values > scale / 2


def is_binary(values: np.ndarray) -> bool:
    """True when the mask holds only 0 and one other value (1 or 255)."""
    uniq = np.unique(values)
    return (
        len(uniq) <= 2 and set(uniq.tolist()) <= {0, 1, 255} and not {1, 255} <= set(uniq.tolist())
    )


def image_files(folder: str | Path) -> list[Path]:
    """The image files of a folder (IMAGE_SUFFIXES, any case), sorted, not recursive: what
    every folder of images means here (Stage 1's importers, ``boxcaseg predict``, the
    workflow's ``predict.images``)."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def list_images(folder: str | Path) -> dict[str, Path]:
    """Image files in a folder by stem (non-recursive)."""
    return {p.stem: p for p in image_files(folder)}
