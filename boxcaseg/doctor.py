"""``boxcaseg doctor``: is the installed stack complete and usable on this machine?

Prints versions, whether mmcv's compiled ops work on CPU and on CUDA, and the GPU if any.
Returns a list of problems; the CLI exits non-zero when it is not empty.
"""

from __future__ import annotations

import importlib
import platform
import sys
from dataclasses import dataclass, field

# Import name -> distribution name, in the order they are printed.
PACKAGES = {
    "numpy": "numpy",
    "torch": "torch",
    "torchvision": "torchvision",
    "mmengine": "mmengine",
    "mmcv": "mmcv",
    "mmdet": "mmdet",
    "mmseg": "mmsegmentation",
    "pycocotools": "pycocotools",
    "snakemake": "snakemake",
    "snakemake_executor_plugin_slurm": "snakemake-executor-plugin-slurm",
    "timm": "timm",
}


@dataclass
class DoctorReport:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, key: str, value: str) -> None:
        self.lines.append(f"{key:<34} {value}")


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def check_mmcv_ops_cpu() -> str:
    """Run nms and RoIAlign on CPU tensors; raise when mmcv's ops are missing or broken."""
    import torch

    try:
        importlib.import_module("mmcv._ext")
    except ImportError as err:
        raise RuntimeError(
            "mmcv is installed without its compiled ops (mmcv._ext cannot be imported: "
            f"{err}). mmcv must be built from source with MMCV_WITH_OPS=1 and "
            "--no-build-isolation; rerun `bash scripts/install.sh`."
        ) from err
    from mmcv.ops import RoIAlign, nms

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, keep = nms(boxes, scores, iou_threshold=0.5)
    if keep.tolist() != [0, 2]:
        raise RuntimeError(f"mmcv nms on CPU returned {keep.tolist()}, expected [0, 2]")
    feats = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]])
    out = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1, aligned=False)(feats, rois)
    if out.shape != (1, 1, 2, 2):
        raise RuntimeError(f"mmcv RoIAlign on CPU returned shape {tuple(out.shape)}")
    return "ok (nms, RoIAlign)"


def check_mmcv_ops_cuda() -> str:
    import torch
    from mmcv.ops import RoIAlign, get_compiling_cuda_version, nms

    compiled = get_compiling_cuda_version()
    if compiled in ("not available", "", None):
        raise RuntimeError(
            "a GPU is present but mmcv's ops were compiled without CUDA: rerun "
            "`bash scripts/install.sh` on a machine with nvcc (it sets FORCE_CUDA=1)"
        )
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0]], device="cuda")
    _, keep = nms(boxes, torch.tensor([0.9, 0.8], device="cuda"), iou_threshold=0.5)
    feats = torch.ones(1, 1, 4, 4, device="cuda")
    rois = torch.tensor([[0.0, 0.0, 0.0, 4.0, 4.0]], device="cuda")
    RoIAlign((2, 2), 1.0, 1, aligned=False)(feats, rois)
    torch.cuda.synchronize()
    return f"ok (CUDA {compiled}; nms, RoIAlign)"


def run_doctor() -> DoctorReport:
    report = DoctorReport()
    report.add("python", f"{platform.python_version()} ({sys.executable})")
    for dist in PACKAGES.values():
        ver = _version(dist)
        report.add(dist, ver or "MISSING")
        if ver is None:
            report.problems.append(f"{dist} is not installed")
    if report.problems:
        return report
    for module in ("mmdet", "mmseg"):  # both assert their mmcv range at import
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - the message is the diagnosis
            report.problems.append(f"`import {module}` fails: {err}")
    from boxcaseg.mm.backbones import (
        PACKAGED_WEIGHTS,
        PackagedWeightsMissing,
        packaged_weights_path,
    )

    for name in PACKAGED_WEIGHTS:  # ImageNet weights from the registry: `pretrained: <name>`
        try:
            report.add(f"pretrained {name}", packaged_weights_path(name))
        except PackagedWeightsMissing as err:
            report.add(f"pretrained {name}", "MISSING")
            report.problems.append(str(err))
    try:
        report.add("mmcv ops on CPU", check_mmcv_ops_cpu())
    except Exception as err:  # noqa: BLE001
        report.add("mmcv ops on CPU", "BROKEN")
        report.problems.append(str(err))
    import torch

    if torch.cuda.is_available():
        report.add("GPU", f"{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}")
        try:
            report.add("mmcv ops on CUDA", check_mmcv_ops_cuda())
        except Exception as err:  # noqa: BLE001
            report.add("mmcv ops on CUDA", "BROKEN")
            report.problems.append(str(err))
    else:
        report.add("GPU", "none (training and inference run on the CPU)")
        from mmcv.ops import get_compiling_cuda_version

        report.add("mmcv ops compiled for CUDA", get_compiling_cuda_version())
    return report
