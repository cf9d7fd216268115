"""Field checks shared by the validator and the importers: one answer per value, never an
exception.

Each check returns the clean value, or ``None`` (numbers, ids) / a problem sentence
(segmentations) that the caller reports against its file and item. Nothing here raises on
malformed input: JSON can hold any type where a number belongs (``true``, ``"3"``, ``[]``,
``NaN``, ``Infinity``, ``1e400``, integers of 400 digits), and every one of them must end as a
sentence in the report, not as a traceback, and never reach pycocotools' C code, which trusts
its input (a polygon point at 1e300 or an RLE whose counts overrun the image size is undefined
behaviour there).
"""

from __future__ import annotations

import math
from typing import Any

MAX_ID = 2**53  # ids must survive a round trip through any JSON reader (IEEE double)
MAX_SIDE = 2**20  # image width / height; PIL refuses far smaller images as decompression bombs


def describe(value: Any, limit: int = 60) -> str:
    """A short ``repr`` for messages: long lists and strings are cut."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_NUMBER_TYPES = {int, float}


def is_number(value: Any) -> bool:
    """An int or a float; ``bool`` is not a number here (JSON ``true`` is no coordinate)."""
    return type(value) in (int, float)


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (wrong type, NaN, +-inf, an int beyond float range)."""
    if not is_number(value):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def valid_id(value: Any) -> int | None:
    """An id: a non-negative integer below 2**53 (not a bool, not a float, not a string)."""
    if type(value) is not int or not 0 <= value < MAX_ID:
        return None
    return value


def image_side(value: Any) -> int | None:
    """An image width or height: a positive whole number (``640`` or ``640.0``) up to 2**20."""
    number = finite_number(value)
    if number is None or number != int(number) or not 0 < number <= MAX_SIDE:
        return None
    return int(number)


def flag01(value: Any) -> int | None:
    """A 0/1 flag (``iscrowd``, ``difficult``): 0, 1, false or true."""
    if type(value) in (int, bool) and value in (0, 1):
        return int(value)
    return None


# --- segmentations ----------------------------------------------------------------------------


def polygon_problem(polygon: Any, width: int, height: int) -> str | None:
    """Why a flat ``[x1, y1, x2, y2, ...]`` polygon is unusable, or None.

    Points may lie outside the image (rasterisation crops them), but not farther than one
    image size beyond its border: such a point is a unit or an order mistake, and far larger
    values overflow pycocotools' integer rasteriser. The common case (a valid polygon) is
    decided with C-level builtins only: this runs once per polygon of a whole COCO."""
    if not isinstance(polygon, list):
        return f"a polygon must be a list of coordinates, got {describe(polygon)}"
    if not set(map(type, polygon)) <= _NUMBER_TYPES:
        bad = next(v for v in polygon if not is_number(v))
        return f"polygon coordinates must be numbers, got {describe(bad)}"
    if len(polygon) % 2:
        return f"a polygon needs an even number of coordinates (x y pairs), got {len(polygon)}"
    if len(polygon) < 6:
        return f"a polygon needs at least 3 points, got {len(polygon) // 2}"
    xs, ys = polygon[0::2], polygon[1::2]
    try:
        fast = (
            math.isfinite(sum(polygon))
            and -width <= min(xs)
            and max(xs) <= 2 * width
            and -height <= min(ys)
            and max(ys) <= 2 * height
        )
    except OverflowError:  # an integer beyond float range
        fast = False
    if fast:
        return None
    for axis, values, size in (("x", xs, width), ("y", ys, height)):
        for v in values:
            number = finite_number(v)
            if number is None:
                return f"polygon {axis} coordinate {describe(v)} is not a finite number"
            if not -size <= number <= 2 * size:
                return (
                    f"polygon {axis} coordinate {number:g} lies far outside the "
                    f"{width}x{height} image"
                )
    return None


def polygons_problem(segmentation: list[Any], width: int, height: int) -> str | None:
    """Why a COCO polygon segmentation (a list of flat polygons) is unusable, or None."""
    for k, polygon in enumerate(segmentation):
        problem = polygon_problem(polygon, width, height)
        if problem is not None:
            return f"segmentation polygon {k}: {problem}"
    return None


def _rle_string_counts(text: str) -> list[int] | str:
    """Decode pycocotools' compressed RLE string (``rleFrString``) in Python: the counts, or
    the reason it is not one. Characters are 6-bit groups offset by 48 ('0'..'o'); bit 5 says
    "more groups follow", counts after the second are deltas to the count two before."""
    counts: list[int] = []
    pos = 0
    while pos < len(text):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(text):
                return "compressed RLE string ends in the middle of a count"
            c = ord(text[pos]) - 48
            if not 0 <= c < 64:
                return f"compressed RLE string holds an invalid character {text[pos]!r}"
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if shift > 35:
                return "compressed RLE string holds a count too large for any image"
            if not more and c & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            return "compressed RLE string decodes to a negative run length"
        counts.append(value)
    return counts


def rle_problem(rle: dict[str, Any], width: int, height: int) -> str | None:
    """Why an RLE segmentation is unusable in a ``width`` x ``height`` image, or None: it
    needs ``size == [height, width]`` and ``counts`` (a compressed string or a list of
    non-negative integers) whose runs cover exactly ``height * width`` pixels."""
    missing = [k for k in ("size", "counts") if k not in rle]
    if missing:
        return f"RLE segmentation without {' and '.join(repr(k) for k in missing)}"
    size = rle["size"]
    if not (
        isinstance(size, list) and len(size) == 2 and all(valid_id(v) is not None for v in size)
    ):
        return f"RLE size must be [height, width] integers, got {describe(size)}"
    if size != [height, width]:
        return f"RLE size {size} (height, width) does not match the {width}x{height} image"
    counts = rle["counts"]
    if isinstance(counts, str):
        decoded = _rle_string_counts(counts)
        if isinstance(decoded, str):
            return decoded
        counts = decoded
    elif isinstance(counts, list):
        bad = next((v for v in counts if type(v) is not int or v < 0), None)
        if bad is not None:
            return f"RLE counts must be non-negative integers, got {describe(bad)}"
    else:
        return f"RLE counts must be a string or a list of integers, got {describe(counts)}"
    total = sum(counts)
    if total != height * width:
        return (
            f"RLE counts cover {total} pixels but the {width}x{height} image has {width * height}"
        )
    return None


def segmentation_problem(segmentation: Any, width: int, height: int) -> str | None:
    """Why a COCO ``segmentation`` (polygons or RLE) is unusable, or None."""
    if isinstance(segmentation, list):
        return polygons_problem(segmentation, width, height)
    if isinstance(segmentation, dict):
        return rle_problem(segmentation, width, height)
    return f"segmentation must be a list of polygons or an RLE object, got {describe(segmentation)}"
