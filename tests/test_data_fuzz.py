"""Fuzz-style validation of Stage 1: every field of a valid COCO, VOC, YOLO-seg, LabelMe and
instance-PNG input is broken in turn (wrong type, NaN, inf, negative, missing, empty, huge),
and `boxcaseg prepare` must answer each with

- a non-zero exit and a message naming the file (and no traceback, and not the catch-all
  "unexpected ..." message that stands in for a check BoxCaseg lacks);
- the output folder byte for byte as an earlier good run left it.

Some mutations are deliberately not errors, and the tables say so field by field: ``warn``
(a box partly outside: clipped; a zero-area box: dropped; an unknown LabelMe shape type:
dropped) must succeed with the warning in the report naming the file, and fail under
``strict``; ``ok`` (an optional field missing, a negative polygon point just outside the image)
must succeed. The many mutations run in-process through ``boxcaseg.cli.main``; a few real
``python -m boxcaseg.cli prepare`` processes prove the exit code and the absence of a traceback
end to end.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from boxcaseg import cli
from tests.test_data_import import two_image_coco, write_image

REPO = Path(__file__).resolve().parents[1]
NAN, INF = float("nan"), float("inf")
DELETE = object()  # a mutation that removes the field
LONG = "x" * 5000

# What each kind of field is mutated into.
NUMBER = {
    "type": "abc",
    "bool": True,
    "nan": NAN,
    "inf": INF,
    "negative": -5,
    "missing": DELETE,
    "empty": "",
    "huge": 1e300,
}
INTEGER = {**NUMBER, "huge": 10**30, "fraction": 1.5}
STRING = {"type": 5, "list": ["a"], "nan": NAN, "missing": DELETE, "empty": "", "huge": LONG}
LIST = {"type": "abc", "number": 7, "nan": NAN, "missing": DELETE, "empty": [], "huge": 1e300}
OBJECT = {"type": "abc", "list": [1], "missing": DELETE, "empty": {}}
TEXT_NUMBER = {
    "type": "abc",
    "nan": "nan",
    "inf": "inf",
    "negative": "-3",
    "missing": DELETE,
    "empty": "",
    "huge": "1e30",
}  # numbers in XML and text label files
TEXT_NAME = {"type": "17", "nan": "nan", "missing": DELETE, "empty": "", "huge": LONG}
WHOLE_JSON = {
    "truncated": b'{"images": [',
    "not an object": b"[]",
    "empty": b"",
    "not utf-8": b"\xff\xfe\x00{",
    "nested": b"[" * 100000 + b"]" * 100000,
}


def write_map(path: Path, values: np.ndarray) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)
    return path.read_bytes()


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    import io

    buffer = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(buffer, format="PNG")
    return buffer.getvalue()


def set_field(data: Any, path: tuple, value: Any) -> Any:
    """A deep copy of ``data`` with the field at ``path`` replaced (or removed: DELETE)."""
    data = copy.deepcopy(data)
    target = data
    for part in path[:-1]:
        target = target[part]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


class Harness:
    """One valid dataset, a good earlier output, and the checks of one mutation at a time."""

    def __init__(
        self,
        tmp: Path,
        capsys: pytest.CaptureFixture,
        split: dict[str, Any],
        salient: dict[str, Any],
    ) -> None:
        self.capsys = capsys
        self.cfg = {"splits": {"train": split}, "salient": salient}
        self.out = tmp / "prepared"
        rc, err = self.run(self.cfg)
        assert rc == 0, f"the valid input does not prepare: {err}"
        self.before = snapshot(self.out)
        self.failures: list[str] = []
        self.checked = 0

    def run(self, cfg: dict[str, Any]) -> tuple[int | str, str]:
        try:
            rc = cli.main(["prepare", "--section", json.dumps(cfg), "--out-dir", str(self.out)])
        except BaseException:  # noqa: BLE001 - the point is that nothing escapes
            self.capsys.readouterr()
            return "raised", traceback.format_exc()
        return rc, self.capsys.readouterr().err

    def restore_output(self) -> None:
        shutil.rmtree(self.out)
        for name, data in self.before.items():
            (self.out / name).parent.mkdir(parents=True, exist_ok=True)
            (self.out / name).write_bytes(data)

    def expect_error(self, case: str, named: str, cfg: dict[str, Any]) -> None:
        rc, err = self.run(cfg)
        problems = []
        if rc in (0, "raised"):
            problems.append(f"exit {rc}")
        if named not in err:
            problems.append(f"message does not name {named[:80]!r}")
        if "Traceback" in err:
            problems.append("traceback")
        if "unexpected" in err:
            problems.append("caught only by the catch-all")
        if snapshot(self.out) != self.before:
            problems.append("output folder changed")
            self.restore_output()
        if problems:
            self.failures.append(f"{case}: {', '.join(problems)}\n      {err.strip()[:400]}")

    def check(
        self,
        case: str,
        outcome: str,
        named: str,
        mutate: Callable[[], Any],
        restore: Callable[[], Any],
        cfg: dict[str, Any] | None = None,
    ) -> None:
        """Apply one mutation, check its outcome, undo it."""
        cfg = cfg or self.cfg
        self.checked += 1
        mutate()
        try:
            if outcome == "error":
                self.expect_error(case, named, cfg)
                return
            rc, err = self.run(cfg)
            if rc != 0:
                self.failures.append(
                    f"{case}: expected {outcome}, got exit {rc}\n      {err.strip()[:400]}"
                )
                return
            if outcome == "warn":
                report = json.loads((self.out / "train.report.json").read_text())
                if not any(named in w["file"] for w in report["warnings"]):
                    self.failures.append(
                        f"{case}: no warning naming {named[:80]!r}: {report['warnings']}"
                    )
            self.restore_output()
            if outcome == "warn":  # under --strict the warning is an error
                self.expect_error(f"{case} (strict)", named, {**cfg, "strict": True})
        finally:
            restore()

    def file_mutation(
        self, case: str, outcome: str, path: Path, data: bytes, named: str | None = None
    ) -> None:
        original = path.read_bytes()
        self.check(
            case,
            outcome,
            named or str(path),
            lambda: path.write_bytes(data),
            lambda: path.write_bytes(original),
        )

    def json_fields(
        self,
        path: Path,
        data: Any,
        fields: list[tuple[tuple, dict, dict]],
        named: str | None = None,
    ) -> None:
        """Every mutation of every ``(field path, mutations, outcomes)``; outcome default
        error; an outcome may be ``("error", "text the message must name")``."""
        for field, mutations, outcomes in fields:
            for kind, value in mutations.items():
                outcome = outcomes.get(kind, "error")
                who = named or str(path)
                if isinstance(outcome, tuple):
                    outcome, who = outcome
                text = json.dumps(set_field(data, field, value)).encode()
                self.file_mutation(
                    f"{path.name} {'.'.join(map(str, field))} = {kind}", outcome, path, text, who
                )

    def config_mutation(self, case: str, key: str, value: Any, named: str) -> None:
        split = set_field(self.cfg["splits"]["train"], (key,), value)
        self.check(
            case,
            "error",
            named,
            lambda: None,
            lambda: None,
            cfg={**self.cfg, "splits": {"train": split}},
        )

    def assert_all_held(self, minimum: int) -> None:
        print("CHECKED", self.checked)
        assert self.checked >= minimum
        assert not self.failures, (
            f"{len(self.failures)} of {self.checked} mutations "
            "misbehaved:\n  - " + "\n  - ".join(self.failures)
        )


@pytest.fixture(scope="module")
def salient(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("salient")
    write_image(root / "images" / "s.png", 8, 6)
    mask = np.zeros((6, 8), np.uint8)
    mask[1:4, 2:6] = 255
    write_map(root / "masks" / "s.png", mask)
    return {"format": "folders", "images": str(root / "images"), "masks": str(root / "masks")}


# --- the valid inputs --------------------------------------------------------------------------


def coco_input(root: Path) -> tuple[dict[str, Any], Path, dict[str, Any]]:
    """Two 20x16 images: a polygon instance, an RLE instance and an uncompressed-RLE crowd."""
    write_image(root / "images" / "a.png", 20, 16)
    write_image(root / "images" / "b.png", 20, 16)
    coco = {"info": {"description": "fuzz"}, **two_image_coco()}
    path = root / "instances.json"
    path.write_text(json.dumps(coco))
    return {"format": "coco", "annotations": str(path), "images": str(root / "images")}, path, coco


VOC_XML = {
    "filename": "img1.jpg",
    "size": {"width": "12", "height": "10", "depth": "3"},
    "object": [
        {
            "name": "dog",
            "difficult": "0",
            "bndbox": {"xmin": "2", "ymin": "3", "xmax": "6", "ymax": "8"},
        },
        {
            "name": "cat",
            "difficult": "0",
            "bndbox": {"xmin": "7", "ymin": "5", "xmax": "11", "ymax": "9"},
        },
        {
            "name": "person",
            "difficult": "1",
            "bndbox": {"xmin": "8", "ymin": "1", "xmax": "12", "ymax": "4"},
        },
    ],
}


def render_xml(node: Any, tag: str = "annotation") -> str:
    if isinstance(node, list):
        return "".join(render_xml(item, tag) for item in node)
    if isinstance(node, dict):
        inner = "".join(render_xml(v, k) for k, v in node.items())
    else:
        inner = str(node).replace("&", "&amp;").replace("<", "&lt;")
    return f"<{tag}>{inner}</{tag}>"


def voc_input(root: Path) -> tuple[dict[str, Any], Path, Path]:
    voc = root / "VOC"
    write_image(voc / "JPEGImages" / "img1.jpg", 12, 10)
    (voc / "Annotations").mkdir(parents=True)
    xml = voc / "Annotations" / "img1.xml"
    xml.write_text(render_xml(VOC_XML))
    objects = np.zeros((10, 12), np.uint8)
    objects[3:8, 2:5] = 1
    objects[5:9, 7:11] = 2
    objects[0:3, 8:11] = 3
    png = voc / "SegmentationObject" / "img1.png"
    write_map(png, objects)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("img1\n")
    return {"format": "voc", "root": str(voc), "split": "train"}, xml, png


YOLO_LINES = ["0 0.1 0.2 0.5 0.2 0.5 0.8 0.1 0.8", "1 0.6 0.1 0.9 0.1 0.9 0.5"]


def yolo_input(root: Path) -> tuple[dict[str, Any], Path]:
    write_image(root / "images" / "x.png", 20, 10)
    (root / "labels").mkdir()
    label = root / "labels" / "x.txt"
    label.write_text("\n".join(YOLO_LINES) + "\n")
    return {
        "format": "yolo_seg",
        "images": str(root / "images"),
        "labels": str(root / "labels"),
        "names": ["a", "b"],
    }, label


def labelme_doc(shapes: list[dict[str, Any]], stem: str) -> dict[str, Any]:
    return {
        "version": "5.4.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": f"../images/{stem}.png",
        "imageData": None,
        "imageHeight": 16,
        "imageWidth": 20,
    }


def lm_shape(
    label: str, points: list, shape_type: str = "polygon", group_id: Any = None
) -> dict[str, Any]:
    return {
        "label": label,
        "points": points,
        "group_id": group_id,
        "shape_type": shape_type,
        "flags": {},
        "description": "",
    }


LABELME_A = labelme_doc(
    [
        {**lm_shape("dog", [[2, 2], [10, 2], [10, 8], [2, 8]]), "difficult": False},
        lm_shape("cat", [[12, 1], [18, 6]], "rectangle", group_id=1),
        lm_shape("cat", [[12, 1], [18, 1], [18, 6], [12, 6]], group_id=1),
    ],
    "a",
)
LABELME_B = labelme_doc([lm_shape("dog", [[1, 1], [8, 1], [8, 9], [1, 9]])], "b")


def labelme_input(root: Path) -> tuple[dict[str, Any], Path]:
    write_image(root / "images" / "a.png", 20, 16)
    write_image(root / "images" / "b.png", 20, 16)
    (root / "ann").mkdir()
    (root / "ann" / "a.json").write_text(json.dumps(LABELME_A))
    (root / "ann" / "b.json").write_text(json.dumps(LABELME_B))
    return {
        "format": "labelme",
        "root": str(root / "ann"),
        "names": ["dog", "cat"],
    }, root / "ann" / "a.json"


SIDE = {"a": {"3": "dog", "7": "cat"}, "b": {"1": "dog"}}


def instance_ids() -> np.ndarray:
    ids = np.zeros((10, 12), np.uint8)
    ids[1:5, 2:5] = 3
    ids[6:8, 4:9] = 7
    ids[5, :] = 255
    return ids


def instance_png_input(root: Path) -> tuple[dict[str, Any], Path, Path]:
    write_image(root / "images" / "a.png", 12, 10)
    write_image(root / "images" / "b.png", 12, 10)
    write_map(root / "masks" / "a_mask.png", instance_ids())
    b = np.zeros((10, 12), np.uint8)
    b[0:2, 0:2] = 1
    write_map(root / "masks" / "b_mask.png", b)
    side = root / "classes.json"
    side.write_text(json.dumps(SIDE))
    return (
        {
            "format": "instance_png",
            "images": str(root / "images"),
            "masks": str(root / "masks"),
            "mask_suffix": "_mask",
            "classes": str(side),
            "names": ["dog", "cat"],
        },
        root / "masks" / "a_mask.png",
        side,
    )


# --- the mutations, format by format -------------------------------------------------------------

COCO_FIELDS = [
    (("images",), LIST, {}),
    (("annotations",), LIST, {}),
    (("categories",), LIST, {}),
    (("info",), OBJECT, {"missing": "ok", "empty": "ok"}),
    (("images", 0), OBJECT, {}),
    (("images", 0, "id"), INTEGER, {}),
    (("images", 0, "file_name"), STRING, {"huge": ("error", LONG[:100])}),  # names the image
    (("images", 0, "width"), INTEGER, {"missing": "ok"}),  # optional: taken from the file
    (("images", 0, "height"), INTEGER, {"missing": "ok"}),
    (("annotations", 0), OBJECT, {"missing": "ok"}),  # one annotation less
    (("annotations", 0, "id"), INTEGER, {}),
    (("annotations", 0, "image_id"), INTEGER, {}),
    (("annotations", 0, "category_id"), INTEGER, {}),
    (("annotations", 0, "bbox"), LIST, {}),
    # x = -5 with w = 8: partly outside, clipped; x = 1e300: fully outside, an error
    (("annotations", 0, "bbox", 0), NUMBER, {"negative": "warn"}),
    # w = -5: a zero-area box, dropped; w = 1e300: partly outside, clipped
    (("annotations", 0, "bbox", 2), NUMBER, {"negative": "warn", "huge": "warn"}),
    (("annotations", 0, "iscrowd"), INTEGER, {"missing": "ok", "bool": "ok"}),  # true == 1
    (("annotations", 0, "area"), NUMBER, {"missing": "ok", "huge": "warn"}),  # replaced
    # no segmentation / [] = a box-only annotation
    (("annotations", 0, "segmentation"), LIST, {"missing": "ok", "empty": "ok"}),
    (("annotations", 0, "segmentation", 0), LIST, {"missing": "ok"}),  # -> [], box only
    # -5 lies just outside the 20x16 image: rasterisation crops it
    (("annotations", 0, "segmentation", 0, 0), NUMBER, {"negative": "ok"}),
    (("annotations", 1, "segmentation"), OBJECT, {"missing": "ok"}),
    (("annotations", 1, "segmentation", "counts"), STRING, {}),
    (("annotations", 1, "segmentation", "size"), LIST, {}),
    (("annotations", 1, "segmentation", "size", 0), INTEGER, {}),
    (("annotations", 2, "segmentation", "counts", 1), INTEGER, {}),
    (("categories", 0, "id"), INTEGER, {}),
    (("categories", 0, "name"), STRING, {"huge": "ok"}),  # a long name is a name
]


def test_fuzz_coco(tmp_path, capsys, salient):
    split, path, coco = coco_input(tmp_path)
    harness = Harness(tmp_path, capsys, split, salient)
    harness.json_fields(path, coco, COCO_FIELDS)
    for case, data in WHOLE_JSON.items():
        harness.file_mutation(f"instances.json {case}", "error", path, data)
    harness.assert_all_held(minimum=200)


def xml_with(field: tuple, value: Any) -> bytes:
    return render_xml(set_field(VOC_XML, field, value)).encode()


VOC_FIELDS = [
    (("size", "width"), TEXT_NUMBER, {}),
    (("size", "height"), TEXT_NUMBER, {}),
    (("object", 0, "name"), TEXT_NAME, {}),  # an unknown class or no class
    (("object", 0, "bndbox"), {"missing": DELETE, "empty": ""}, {}),
    # VOC xmin = -3: partly outside, clipped; 1e30: xmax < xmin, a zero-area box, dropped
    (("object", 0, "bndbox", "xmin"), TEXT_NUMBER, {"negative": "warn", "huge": "warn"}),
    (("object", 0, "bndbox", "xmax"), TEXT_NUMBER, {"negative": "warn", "huge": "warn"}),
    (("object", 0, "bndbox", "ymin"), TEXT_NUMBER, {"negative": "warn", "huge": "warn"}),
    (("object", 0, "difficult"), TEXT_NUMBER, {"missing": "ok", "empty": "ok"}),  # = 0
    # no <filename>: <stem>.jpg; a file name that is not there names the image and the XML
    (
        ("filename",),
        {"missing": DELETE, "empty": "", "huge": LONG, "other": "nope.jpg"},
        {
            "missing": "ok",
            "empty": "ok",
            "huge": ("error", "img1.xml"),
            "other": ("error", "img1.xml"),
        },
    ),
]


def test_fuzz_voc(tmp_path, capsys, salient):
    split, xml, png = voc_input(tmp_path)
    harness = Harness(tmp_path, capsys, split, salient)
    for field, mutations, outcomes in VOC_FIELDS:
        for kind, value in mutations.items():
            outcome = outcomes.get(kind, "error")
            outcome, named = outcome if isinstance(outcome, tuple) else (outcome, str(xml))
            harness.file_mutation(
                f"img1.xml {'/'.join(map(str, field))} = {kind}",
                outcome,
                xml,
                xml_with(field, value),
                named,
            )
    for case, data in {
        "truncated": b"<annotation><size>",
        "empty": b"",
        "not utf-8": b"\xff\xfe<a>",
    }.items():
        harness.file_mutation(f"img1.xml {case}", "error", xml, data)
    objects = np.asarray(Image.open(png))
    for case, data, outcome in [
        ("wrong size", png_bytes(np.zeros((5, 5), np.uint8)), "error"),
        ("colour", png_bytes(np.dstack([objects, objects * 2, objects])), "error"),
        ("gray + alpha", png_bytes(objects, "LA"), "error"),
        ("corrupt", b"\x89PNG\r\n\x1a\n garbage", "error"),
        ("empty", png_bytes(np.zeros_like(objects)), "warn"),  # objects without pixels
        ("16-bit", png_bytes(objects.astype(np.uint16)), "ok"),
    ]:
        harness.file_mutation(f"img1.png {case}", outcome, png, data)
    harness.assert_all_held(minimum=60)


def test_fuzz_yolo_seg(tmp_path, capsys, salient):
    split, label = yolo_input(tmp_path)
    harness = Harness(tmp_path, capsys, split, salient)
    tokens = YOLO_LINES[0].split()
    for index, what, outcomes in [
        (0, "class", {}),
        # x1 = -0.5 or 1e30: normalised coordinates clipped to [0, 1]
        (1, "x1", {"negative": "warn", "huge": "warn"}),
        (8, "y4", {"negative": "warn", "huge": "warn"}),
    ]:
        for kind, value in {**TEXT_NUMBER, "negative": "-0.5" if index else "-1"}.items():
            changed = [t for t in tokens]
            if value is DELETE:
                del changed[index]
            else:
                changed[index] = value
            text = "\n".join([" ".join(changed), YOLO_LINES[1]]) + "\n"
            harness.file_mutation(
                f"x.txt {what} = {kind}", outcomes.get(kind, "error"), label, text.encode()
            )
    harness.file_mutation("x.txt not utf-8", "error", label, b"\xff\xfe0 0.1")
    harness.file_mutation("x.txt too few points", "error", label, b"0 0.1 0.1 0.2 0.2\n")
    for kind, value in {
        "missing": DELETE,
        "empty": [],
        "type": 5,
        "duplicates": ["a", "a"],
        "blank": ["a", " "],
        "no file": "nowhere/names.txt",
    }.items():
        harness.config_mutation(f"names = {kind}", "names", value, "names")
    harness.assert_all_held(minimum=28)


LABELME_FIELDS = [
    (("imagePath",), STRING, {"huge": ("error", "imagePath of a.json")}),  # names the image
    (("imageWidth",), INTEGER, {}),
    (("imageHeight",), INTEGER, {}),
    (("shapes",), LIST, {"empty": "ok"}),  # an image without objects
    (("shapes", 0), OBJECT, {"missing": "ok"}),
    (("shapes", 0, "label"), STRING, {}),  # names: [dog, cat], so a long label is unknown
    (("shapes", 0, "points"), LIST, {}),
    (("shapes", 0, "points", 0), LIST, {"missing": "ok"}),  # 3 points left: a triangle
    (("shapes", 0, "points", 0, 0), NUMBER, {"negative": "ok"}),  # just outside: cropped
    # an unknown shape type is dropped with a warning; none at all means polygon
    (("shapes", 0, "shape_type"), STRING, {"missing": "ok", "empty": "warn", "huge": "warn"}),
    (("shapes", 0, "group_id"), INTEGER, {"negative": "ok", "missing": "ok", "huge": "ok"}),
    (
        ("shapes", 0, "difficult"),
        {"type": "yes", "nan": NAN, "negative": -1, "huge": 10**30, "missing": DELETE},
        {"missing": "ok"},
    ),
    (("shapes", 1, "points"), {"three": [[12, 1], [18, 6], [3, 3]], "one": [[12, 1]]}, {}),
    # the rectangle's corner at y = -5: its group's box partly outside, clipped
    (("shapes", 1, "points", 1, 1), NUMBER, {"negative": "warn"}),
    (("shapes", 2, "label"), {"other": "dog"}, {}),  # a group of two labels
]


def test_fuzz_labelme(tmp_path, capsys, salient):
    split, path = labelme_input(tmp_path)
    harness = Harness(tmp_path, capsys, split, salient)
    harness.json_fields(path, LABELME_A, LABELME_FIELDS)
    for case, data in WHOLE_JSON.items():
        harness.file_mutation(f"a.json {case}", "error", path, data)
    harness.assert_all_held(minimum=90)


def test_fuzz_instance_png(tmp_path, capsys, salient):
    split, mask, side = instance_png_input(tmp_path)
    harness = Harness(tmp_path, capsys, split, salient)
    ids = instance_ids()
    for case, data, outcome in [
        ("wrong size", png_bytes(np.zeros((5, 5), np.uint8)), "error"),
        ("colour", png_bytes(np.dstack([ids, ids // 2, ids])), "error"),
        ("gray + alpha", png_bytes(ids, "LA"), "error"),
        ("corrupt", b"\x89PNG\r\n\x1a\n garbage", "error"),
        ("truncated", png_bytes(ids)[:40], "error"),
        # no instance left: the side file's classes for a.png name instances not there
        ("empty", png_bytes(np.zeros_like(ids)), "warn"),
        # in a 16-bit map 255 is an instance, and the side file gives it no class
        ("16-bit", png_bytes(ids.astype(np.uint16)), "error"),
    ]:
        harness.file_mutation(
            f"a_mask.png {case}",
            outcome,
            mask,
            data,
            named=str(side if case in ("empty", "16-bit") else mask),
        )
    side_fields = [
        (("a", "3"), STRING, {}),
        (("a",), OBJECT, {}),
        (("b", "1"), {"number": 1, "none": None}, {}),
    ]
    harness.json_fields(side, SIDE, side_fields)
    for key in ("abc", "-3", "0", "1e30", ""):
        renamed = {"a": {key: "dog", "7": "cat"}, "b": {"1": "dog"}}
        harness.file_mutation(
            f"classes.json instance id {key!r}", "error", side, json.dumps(renamed).encode()
        )
    for case, data in WHOLE_JSON.items():
        harness.file_mutation(f"classes.json {case}", "error", side, data)
    for kind, value, named in [
        ("mask_suffix", 5, "mask_suffix"),
        ("classes", 5, "classes"),
        ("classes", "nowhere/classes.json", "nowhere/classes.json"),
        ("names", [], "names"),
        ("masks", "", "masks"),
        ("images", None, "images"),
    ]:
        harness.config_mutation(f"{kind} = {value!r}", kind, value, named)
    harness.assert_all_held(minimum=35)


def test_fuzz_voc_without_xml(tmp_path, capsys, salient):
    root = tmp_path / "voc"
    write_image(root / "JPEGImages" / "p1.jpg", 12, 10)
    (root / "class_names.txt").write_text("_background_\nperson\nbottle\n")
    objects, classes = np.zeros((10, 12), np.uint8), np.zeros((10, 12), np.uint8)
    objects[1:4, 1:5], classes[1:4, 1:5] = 1, 2
    objects[5:9, 6:8], classes[5:9, 6:8] = 2, 1
    object_png = root / "SegmentationObject" / "p1.png"
    class_png = root / "SegmentationClass" / "p1.png"
    write_map(object_png, objects)
    write_map(class_png, classes)
    harness = Harness(tmp_path, capsys, {"format": "voc", "root": str(root)}, salient)
    spans = classes.copy()
    spans[1, 1] = 1
    unknown = classes.copy()
    unknown[1:4, 1:5] = 9
    for case, path, data in [
        ("instance over two classes", class_png, png_bytes(spans)),
        ("class value beyond names", class_png, png_bytes(unknown)),
        ("instance over background", class_png, png_bytes(np.zeros_like(classes))),
        ("class map of another size", class_png, png_bytes(np.zeros((4, 4), np.uint8))),
        ("corrupt instance map", object_png, b"garbage"),
        ("colour class map", class_png, png_bytes(np.dstack([classes, classes * 3, classes]))),
    ]:
        harness.file_mutation(case, "error", path, data, named=str(path))
    harness.file_mutation(
        "class_names.txt empty", "error", root / "class_names.txt", b"", named="class_names.txt"
    )
    harness.file_mutation(
        "class_names.txt duplicates",
        "error",
        root / "class_names.txt",
        b"_background_\nperson\nperson\n",
        named="class_names.txt",
    )
    harness.assert_all_held(minimum=8)


# --- end to end: real processes ------------------------------------------------------------------


def test_fuzz_real_processes_exit_2_without_traceback(tmp_path, salient):
    """One broken input per format through `python -m boxcaseg.cli prepare`, in parallel."""
    cases = []
    split, path, coco = coco_input(tmp_path / "coco")
    path.write_text(json.dumps(set_field(coco, ("annotations", 0, "bbox", 1), NAN)))
    cases.append(("coco", split, path))
    split, xml, _ = voc_input(tmp_path / "voc")
    xml.write_bytes(xml_with(("object", 0, "bndbox", "ymax"), "inf"))
    cases.append(("voc", split, xml))
    split, label = yolo_input(tmp_path / "yolo")
    label.write_text("0 0.1 nan 0.5 0.2 0.5 0.8\n")
    cases.append(("yolo_seg", split, label))
    split, path = labelme_input(tmp_path / "labelme")
    path.write_text(json.dumps(set_field(LABELME_A, ("imageWidth",), "wide")))
    cases.append(("labelme", split, path))
    split, mask, _ = instance_png_input(tmp_path / "png")
    mask.write_bytes(png_bytes(np.zeros((3, 3), np.uint8)))
    cases.append(("instance_png", split, mask))

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        ),
    }
    running = []
    for fmt, split, named in cases:
        out = tmp_path / f"out_{fmt}"
        out.mkdir()
        (out / "train.boxes.json").write_text('{"earlier": "output"}')
        section = json.dumps({"splits": {"train": split}, "salient": salient})
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "boxcaseg.cli",
                "prepare",
                "--section",
                section,
                "--out-dir",
                str(out),
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        running.append((fmt, named, out, proc))
    for fmt, named, out, proc in running:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2, (fmt, proc.returncode, stderr)
        assert stderr.startswith("boxcaseg prepare: "), (fmt, stderr)
        assert str(named) in stderr, (fmt, stderr)
        assert "Traceback" not in stderr + stdout, (fmt, stderr)
        assert [p.name for p in out.iterdir()] == ["train.boxes.json"], fmt
        assert (out / "train.boxes.json").read_text() == '{"earlier": "output"}', fmt
