"""`boxcaseg predict` and `masks-from-boxes` before any model is loaded: which images, which
refusals (the runs over real checkpoints are in test_workflow.py, on the tiny run's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from boxcaseg.apply import check_images, image_list
from boxcaseg.data.report import DataError


def _image(path: Path, size=(20, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(path)
    return path


def test_images_from_folders_lists_and_coco_files(tmp_path):
    _image(tmp_path / "a/2.png")
    _image(tmp_path / "a/1.jpg")
    (tmp_path / "a/notes.txt").write_text("not an image")
    listed = tmp_path / "list.txt"
    listed.write_text("# mine\nb/x.png\n\n")
    _image(tmp_path / "b/x.png")
    _image(tmp_path / "c/y.png")
    coco = {
        "info": {"image_root": str(tmp_path / "c")},
        "images": [{"id": 7, "file_name": "y.png"}],
        "categories": [{"id": 3, "name": "cat"}],
    }
    (tmp_path / "val.json").write_text(json.dumps(coco))
    images = image_list([tmp_path / "a", listed, tmp_path / "val.json"])
    # the COCO file keeps its ids; the rest are numbered after them, in the order given
    assert [(Path(i["file_name"]).name, i["id"]) for i in images["images"]] == [
        ("1.jpg", 8),
        ("2.png", 9),
        ("x.png", 10),
        ("y.png", 7),
    ]
    assert images["categories"] == [{"id": 3, "name": "cat"}]
    with pytest.raises(DataError, match="listed twice"):
        image_list([tmp_path / "a", tmp_path / "a/1.jpg"])
    with pytest.raises(DataError, match="no such file"):
        image_list([tmp_path / "nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        image_list([tmp_path / "empty"])


def test_unreadable_images_are_skipped_or_stop_the_run_by_name(tmp_path):
    good = _image(tmp_path / "good.png")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    images = image_list([tmp_path])["images"]
    readable, skipped = check_images(images, "skip")
    assert [(i["file_name"], i["width"], i["height"]) for i in readable] == [(str(good), 30, 20)]
    assert [Path(s["file_name"]).name for s in skipped] == ["bad.jpg"]
    with pytest.raises(DataError, match=r"bad\.jpg: corrupt or unreadable image"):
        check_images(images, "stop")


def test_predict_refuses_before_writing_anything(tmp_path):
    """An unreadable image (default: stop) or an output folder in use: exit 2, a message that
    names the file, no traceback, nothing written (no model is loaded for either)."""
    _image(tmp_path / "photos/good.png")
    (tmp_path / "photos/bad.jpg").write_bytes(b"nope")
    cli = [
        sys.executable,
        "-m",
        "boxcaseg.cli",
        "predict",
        str(tmp_path / "photos"),
        "--checkpoint",
        str(tmp_path / "absent.pth"),
    ]
    stop = subprocess.run(
        [*cli, "--out-dir", str(tmp_path / "out")], capture_output=True, text=True
    )
    assert stop.returncode == 2 and "bad.jpg: corrupt or unreadable image" in stop.stderr
    assert "Traceback" not in stop.stderr and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # no partial folder either
    (tmp_path / "used").mkdir()
    (tmp_path / "used/predictions.segm.json").write_text("[]")
    used = subprocess.run(
        [*cli, "--out-dir", str(tmp_path / "used"), "--on-error", "skip"],
        capture_output=True,
        text=True,
    )
    assert used.returncode == 2 and "exists and is not empty" in used.stderr
    assert (tmp_path / "used/predictions.segm.json").read_text() == "[]"


def test_masks_from_boxes_needs_exactly_one_method(tmp_path):
    from boxcaseg.apply import masks_from_boxes

    with pytest.raises(DataError, match="one of the two"):
        masks_from_boxes({"format": "coco"}, tmp_path / "m.json")
    with pytest.raises(DataError, match="one of the two"):
        masks_from_boxes({"format": "coco"}, tmp_path / "m.json", checkpoint="x.pth", grabcut=True)
