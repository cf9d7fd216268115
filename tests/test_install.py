"""The installed stack: doctor, mmcv's compiled ops, checkpoints on torch >= 2.6."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import torch


def test_doctor_reports_a_working_install():
    from boxcaseg.doctor import run_doctor

    report = run_doctor()
    assert report.problems == []
    text = "\n".join(report.lines)
    for name in (
        "torch",
        "mmengine",
        "mmcv",
        "mmdet",
        "mmsegmentation",
        "pycocotools",
        "snakemake",
    ):
        assert name in text
    assert "mmcv ops on CPU" in text and "ok (nms, RoIAlign)" in text


def test_doctor_command_exits_zero_and_prints_versions():
    result = subprocess.run(
        [sys.executable, "-m", "boxcaseg.cli", "doctor"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "mmcv" in result.stdout and "2.1.0" in result.stdout and "all good" in result.stdout
    assert "pkg_resources" not in result.stderr


PKG_RESOURCES_WARNING = "UserWarning: pkg_resources is deprecated"


def test_mmengines_pkg_resources_warning_is_silenced_once_boxcaseg_is_imported():
    """mmengine imports (and reloads) pkg_resources when it looks up an installed package, as
    for every `mmdet::` base of a config: setuptools' deprecation warning used to open every
    command's and rule's log. Importing boxcaseg (as `python -m boxcaseg.cli` does first)
    silences that warning, and only that one."""
    lookup = "from mmengine.utils import is_installed; is_installed('mmdet'); "

    def stderr(code: str) -> str:
        result = subprocess.run(
            [sys.executable, "-W", "default", "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stderr

    if PKG_RESOURCES_WARNING not in stderr(lookup):
        pytest.skip("this setuptools / mmengine does not warn about pkg_resources")
    assert PKG_RESOURCES_WARNING not in stderr("import boxcaseg; " + lookup)
    other = "import warnings; warnings.warn('another one', UserWarning)"
    assert "UserWarning: another one" in stderr("import boxcaseg; " + other)


def test_doctor_fails_clearly_when_mmcv_has_no_compiled_ops(monkeypatch):
    from boxcaseg import doctor

    real_import = importlib.import_module

    def without_ext(name, *args, **kwargs):
        if name == "mmcv._ext":
            raise ImportError("libmmcv missing")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(doctor.importlib, "import_module", without_ext)
    report = doctor.run_doctor()
    assert any(
        "mmcv is installed without its compiled ops (mmcv._ext" in p for p in report.problems
    )
    assert any("rerun `bash scripts/install.sh`" in p for p in report.problems)


def test_mmcv_ops_are_callable_on_cpu_tensors():
    from mmcv.ops import RoIAlign, nms

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.5, 0.5, 10.0, 10.0], [20.0, 20.0, 25.0, 25.0]])
    dets, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert dets.shape == (2, 5)
    feats = torch.arange(16.0).reshape(1, 1, 4, 4)
    # one bin over the whole map, 2x2 samples at pixel centres 0.5/2.5 (aligned=True)
    out = RoIAlign((1, 1), 1.0, sampling_ratio=2, aligned=True)(
        feats, torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
    )
    assert out.item() == pytest.approx(feats.mean().item())


def test_checkpoint_saved_and_loaded_through_mmengine(tmp_path):
    """mmengine's checkpoints pickle a HistoryBuffer and numpy objects: torch >= 2.6 refuses
    them by default (weights_only=True); BoxCaseg's fix makes mmengine load them."""
    import numpy as np
    from mmengine.logging import HistoryBuffer, MessageHub
    from mmengine.runner.checkpoint import load_checkpoint, save_checkpoint

    import boxcaseg.mm  # noqa: F401  (applies the fix)

    model = torch.nn.Linear(3, 2)
    hub = MessageHub.get_instance("boxcaseg-test")
    hub.update_scalar("train/loss", 0.5)
    checkpoint = {
        "state_dict": model.state_dict(),
        "message_hub": hub.state_dict(),
        "meta": {"iter": 7, "seed": np.int64(3)},
    }
    path = tmp_path / "iter_7.pth"
    save_checkpoint(checkpoint, str(path))
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        torch.load(path)  # torch's own default: the trap this fix is about
    other = torch.nn.Linear(3, 2)
    loaded = load_checkpoint(other, str(path), map_location="cpu")
    assert loaded["meta"]["iter"] == 7
    assert isinstance(loaded["message_hub"]["log_scalars"]["train/loss"], HistoryBuffer)
    assert torch.equal(other.weight, model.weight)
