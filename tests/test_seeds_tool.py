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


def test_reuse_stages_copies_stages_1_to_4_only_in_their_time_order(seeds, tmp_path, monkeypatch):
    monkeypatch.setattr(seeds, "REPO", tmp_path)
    # a data folder read by Stage 1 that a remount made newer than the source run
    shared = tmp_path / "shared"
    shared.mkdir()
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
    copied_times = []
    for name, copied in files.items():
        assert (dst / name).is_file() == copied, name
        if copied:
            assert (dst / name).read_text() == name
            copied_times.append((dst / name).stat().st_mtime_ns)
    assert copied_times == sorted(copied_times)  # the order Snakemake judges by
    assert len(set(copied_times)) == len(copied_times)
    assert min(copied_times) > shared.stat().st_mtime_ns  # no output older than the data
    generated_copy = tmp_path / "resources" / "copy" / "demo" / "image.png"
    assert generated_copy.read_text() == "pixels"
    assert generated_copy.stat().st_mtime_ns > shared.stat().st_mtime_ns
    with pytest.raises(SystemExit, match="exists"):
        seeds.reuse_stages("run", "copy")
    with pytest.raises(SystemExit, match="no Stage 4 output"):
        seeds.reuse_stages("missing", "other")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--set", "detection.max_iters=480"], "--run-name of their own"),
        (["--set", "detection.max_iters=480", "--run-name", "demo"], "--run-name of their own"),
        (["--run-name", "x", "--set", "run_name=y"], "use --run-name"),
        (["--run-name", "x", "--set", "detection.seed=3"], "the seeds are --seeds"),
        (
            ["--run-name", "x", "--reuse-stages-from", "demo", "--set", "merge.drop_threshold=0.3"],
            "detection.\\* settings only",
        ),
    ],
)
def test_runs_with_settings_of_their_own_are_refused_when_they_would_mix_with_others(
    seeds, monkeypatch, argv, message
):
    monkeypatch.setattr(seeds.sys, "argv", ["seeds.py", *argv])
    monkeypatch.setattr(seeds, "run_workflow", lambda *a, **k: pytest.fail("ran snakemake"))
    with pytest.raises(SystemExit, match=message):
        seeds.main()


def test_repeated_set_options_all_count(seeds, monkeypatch, tmp_path):
    """--set a=1 --set b=2 keeps both (argparse's nargs='+' alone kept only the last)."""
    calls = []
    monkeypatch.setattr(seeds, "REPO", tmp_path)
    (tmp_path / "config.yaml").write_text("run_name: demo\n")
    argv = ["seeds.py", "--seeds", "1", "--run-name", "more", "--json", str(tmp_path / "s.json")]
    argv += ["--set", "detection.max_iters=480", "--set", "detection.lr=0.02"]
    monkeypatch.setattr(seeds.sys, "argv", argv)
    monkeypatch.setattr(
        seeds, "run_workflow", lambda cfg, overrides, targets: calls.append(overrides) or 1.0
    )
    monkeypatch.setattr(seeds, "headline", lambda out: {"weak mask AP": 1.0})
    assert seeds.main() == 0
    assert calls == [
        {
            "run_name": "more_seed1",
            "segmentation": {"seed": 1},
            "detection": {"seed": 1, "max_iters": 480, "lr": 0.02},
        }
    ]
