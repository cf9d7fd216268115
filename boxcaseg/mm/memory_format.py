"""The memory layout a model runs in, as its config states it (``memory_format``).

``memory_format = 'channels_last'`` (the CPU recipes on EfficientNet-Lite0) stores every 4-D
weight as NHWC, so oneDNN's convolutions take their NHWC path and the activations follow
(a convolution with an NHWC weight returns NHWC); on the Lite0 networks' depthwise
convolutions that is the faster layout on a CPU (docs/results.md, "Speed"). The default, no
key or ``'contiguous'``, leaves PyTorch's NCHW.

Applied wherever a model is built: training and the evaluation's test loop (the engine, after
the Runner is built), Stage 3 (``load_segmentor``), the detector graded in the true boxes and
``boxcaseg predict`` (:func:`apply_memory_format`). Weights loaded afterwards keep the layout
(``load_state_dict`` copies into the parameters). The layout changes float sums' order: the
figures of a run move in their last digits when it is switched, then reproduce again.

mmcv's own CPU ``RoIAlign`` kernel reads its input as contiguous NCHW whatever its strides, so
with NHWC features it returns wrong values (tests/test_memory_format.py); torchvision's
``roi_align`` (mmcv's ``use_torchvision=True``) and ``GatherRoIAlign``, its vectorised CPU
equal (:mod:`boxcaseg.mm.det.roi_align`, what the Lite0 configs use), give mmcv's NCHW values
in either layout. A channels-last model with an mmcv RoIAlign is refused with that advice.
"""

from __future__ import annotations

from typing import Any

import torch

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def configured_memory_format(cfg: Any) -> str:
    layout = cfg.get("memory_format") or "contiguous"
    if layout not in LAYOUTS:
        raise ValueError(f"memory_format {layout!r}: one of {sorted(LAYOUTS)}")
    return layout


def apply_memory_format(model: torch.nn.Module, cfg: Any) -> str | None:
    """Put ``model`` (a wrapper's module too) in the layout ``cfg`` states; in place (the
    parameters stay the same objects, so an optimizer built already still holds them).
    Returns the line to log, None for the default layout.

    Under DDP the wrapper has built its gradient buckets for the NCHW layout already: PyTorch
    warns once ("Grad strides do not match bucket view strides") and copies each gradient into
    its bucket, which is correct and a little slower. Only the Lite0 CPU recipes state
    channels_last; the paper's GPU configs keep the default layout."""
    layout = configured_memory_format(cfg)
    if layout == "contiguous":
        return None
    module = getattr(model, "module", model)
    _refuse_mmcv_roi_align(module)
    module.to(memory_format=LAYOUTS[layout])
    return f"[boxcaseg] memory layout {layout} (the config's memory_format)"


def _refuse_mmcv_roi_align(module: torch.nn.Module) -> None:
    from mmcv.ops import RoIAlign

    for name, sub in module.named_modules():
        if isinstance(sub, RoIAlign) and not sub.use_torchvision:
            raise ValueError(
                f"memory_format channels_last with mmcv's own RoIAlign ({name}): its CPU kernel "
                "reads NHWC features as NCHW and returns wrong values; set "
                "roi_layer=dict(type='GatherRoIAlign', ..., sampling_ratio=1 or more) in the "
                "config (boxcaseg.mm.det: torchvision's values, faster on a CPU), or "
                "roi_layer=dict(type='RoIAlign', ..., use_torchvision=True)"
            )
