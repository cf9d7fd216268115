"""benchmarks/seeds.py's run settings: ``--set`` pairs as config overrides, and
``--reuse-stages-from``'s copy of a run's Stage 1-4 files (the detectors' own files left out,
file times kept so that Snakemake finds the copies up to date)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seeds():
    spec = importlib.util.spec_from_file_location("seeds", REPO / "benchmarks" / "seeds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_set_pairs_become_nested_overrides_merged_over_the_seed_settings(seeds):
    settings = seeds.dotted_overrides(["detection.max_iters=480", "merge.drop_threshold=0.5"])
    assert settings == {"detection": {"max_iters": 480}, "merge": {"drop_threshold": 0.5}}
    merged = seeds.deep_merge({"run_name": "x", "detection": {"seed": 1}}, settings)
    assert merged == {
        "run_name": "x",
        "detection": {"seed": 1, "max_iters": 480},
        "merge": {"drop_threshold": 0.5},
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        seeds.dotted_overrides(["detection.max_iters"])


def test_reuse_stages_copies_stages_1_to_4_only_with_their_times(seeds, tmp_path, monkeypatch):
    monkeypatch.setattr(seeds, "REPO", tmp_path)
    src = tmp_path / "results" / "run"
    files = {
        "data/train.gt.json": True,
        "segmentation/final.pth": True,
        "proxy/proxy_masks.json": True,
        "benchmarks/train_segmentation.tsv": True,
        "benchmarks/proxy_masks_0.tsv": True,
        "benchmarks/train_detection_weak.tsv": False,
        "benchmarks/evaluate_detection_weak.tsv": False,
        "detection/weak/final.pth": False,
        "summary/results.md": False,
    }
    for i, name in enumerate(files):
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    generated = tmp_path / "resources" / "run" / "demo" / "image.png"
    generated.parent.mkdir(parents=True)
    generated.write_text("pixels")

    seeds.reuse_stages("run", "copy")

    dst = tmp_path / "results" / "copy"
    for i, (name, copied) in enumerate(files.items()):
        assert (dst / name).is_file() == copied, name
        if copied:
            assert (dst / name).read_text() == name
            assert (dst / name).stat().st_mtime == 1_000_000 + i
    assert (tmp_path / "resources" / "copy" / "demo" / "image.png").read_text() == "pixels"
    with pytest.raises(SystemExit, match="exists"):
        seeds.reuse_stages("run", "copy")
    with pytest.raises(SystemExit, match="no Stage 4 output"):
        seeds.reuse_stages("missing", "other")
