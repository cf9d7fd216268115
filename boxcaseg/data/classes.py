"""Class names and split lists, shared by the Stage 1 importers of every format: the builtin
class lists, a ``names`` entry resolved to a list, categories numbered 1..K, and the image
stems of a PASCAL VOC split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from boxcaseg.data.fields import describe
from boxcaseg.data.report import DataError, ValidationReport

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

COCO80_CLASSES = (
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
)

# Names a config may give instead of a list of class names.
BUILTIN_CLASS_LISTS = {"voc": VOC_CLASSES, "coco80": COCO80_CLASSES}

# LabelMe's labels that are not classes: ``__ignore__`` marks a region to ignore (labelme's
# labels.txt starts with it; labelme2coco makes no instance of it, labelme2voc writes it as
# void) and ``_background_`` is value 0, the background, of labelme2voc's class maps.
LABELME_NON_CLASSES = ("__ignore__", "_background_")


def resolve_class_names(names: Any) -> list[str]:
    """A list of names, a builtin list name ('voc', 'coco80'), or a file (one name per line,
    or a YOLO data YAML with a ``names`` list/dict). Names must be non-empty and unique."""
    if isinstance(names, (list, tuple)):
        result = list(names)
    elif isinstance(names, str) and names in BUILTIN_CLASS_LISTS:
        result = list(BUILTIN_CLASS_LISTS[names])
    elif isinstance(names, str) and names:
        result = _class_names_file(Path(names))
    else:
        raise DataError(
            f"names: class names must be a list, one of {sorted(BUILTIN_CLASS_LISTS)}"
            f", or an existing file, got {describe(names)}"
        )
    where = names if isinstance(names, str) else "names"
    bad = [n for n in result if not (isinstance(n, str) and n.strip() or type(n) is int)]
    if bad:
        raise DataError(f"{where}: class names must be non-empty strings, got {describe(bad[0])}")
    result = [str(n).strip() for n in result]
    if not result:
        raise DataError(f"{where}: no class names")
    duplicates = sorted({n for n in result if result.count(n) > 1})
    if duplicates:
        raise DataError(f"{where}: duplicate class name(s) {duplicates}")
    return result


def _class_names_file(path: Path) -> list[Any]:
    if not path.is_file():
        raise DataError(
            f"{path}: class names must be a list, one of "
            f"{sorted(BUILTIN_CLASS_LISTS)}, or an existing file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read class names ({err})") from err
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise DataError(f"{path}: not valid YAML ({err})") from err
        value = data.get("names") if isinstance(data, dict) else None
        if isinstance(value, dict):
            if sorted(value, key=str) != sorted(range(len(value)), key=str):
                raise DataError(f"{path}: a 'names' mapping needs the integer keys 0..K-1")
            return [value[k] for k in sorted(value)]
        if isinstance(value, list):
            return value
        raise DataError(f"{path}: no 'names' list in this YAML file")
    return [line.strip() for line in text.splitlines() if line.strip()]


def categories_for(names: list[str]) -> list[dict[str, Any]]:
    """COCO categories for class names: ids 1..K in the order given."""
    return [{"id": i + 1, "name": n} for i, n in enumerate(names)]


def voc_image_ids(
    root: Path, split: str | None, report: ValidationReport, listing: tuple[str, str]
) -> list[str]:
    """The image stems of a split: its ImageSets list, or every file of ``listing`` (a folder
    and a suffix) when no split is named."""
    if split is None:
        return sorted(p.stem for p in (root / listing[0]).glob(f"*{listing[1]}"))
    for sub in ("Segmentation", "Main"):
        list_file = root / "ImageSets" / sub / f"{split}.txt"
        if list_file.is_file():
            try:
                lines = list_file.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as err:
                report.error(str(list_file), split, f"cannot read the split list ({err})")
                return []
            return [line.split()[0] for line in lines if line.strip()]
    report.error(
        str(root / "ImageSets"),
        split,
        f"no ImageSets/{{Segmentation,Main}}/{split}.txt list for this split",
    )
    return []
