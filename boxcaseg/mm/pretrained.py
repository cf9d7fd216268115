"""Loud pretrained-backbone loading, for Stage 2 (HRNet) and Stage 5 (ResNet) alike.

mmengine's ``Pretrained`` initialiser loads with ``strict=False`` and only logs a warning on
rank 0, so a W18 checkpoint given to a W48 backbone, a full segmentor checkpoint (keys under
``backbone.``) or R-50 weights in an R-101 config train from mostly random weights without a
word. Importing :mod:`boxcaseg.mm` registers :class:`CheckedPretrainedInit` beside it, under
its own name (mmengine's ``Pretrained`` stays as it is): every BoxCaseg config and the
``pretrained`` settings of config.yaml say ``init_cfg=dict(type='CheckedPretrained',
checkpoint=...)`` (the same arguments as ``Pretrained``). It

- resolves a packaged checkpoint NAME (``efficientnet-lite0``: weights installed from the
  package registry, :mod:`boxcaseg.mm.backbones`) to its file;
- unwraps the checkpoint (``state_dict`` / ``model`` / ``module`` containers) and strips the
  common prefixes (``module.``, ``backbone.``) when that makes the keys fit the module;
- renames the ``efficientnet-lite-pytorch`` key layout to timm's for a module built by timm;
- logs how many of the module's keys matched (name and shape), which are missing, and which
  checkpoint keys were not used (a classifier, ``incre_modules``, ``fc.*``: expected);
- stops with :class:`CheckpointMismatchError` (the CLI prints it without a traceback) when
  fewer than ``min_matched`` (90 %) of the module's keys matched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from mmengine.logging import print_log
from mmengine.model.weight_init import PretrainedInit, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS

from boxcaseg.data.report import DataError
from boxcaseg.mm.backbones import (
    PackagedWeightsMissing,
    is_lite_layout,
    lite_to_timm_keys,
    resolve_checkpoint,
)

STRIPPABLE_PREFIXES = ("module.", "backbone.")
MIN_MATCHED = 0.9
_LISTED = 8  # key names spelled out per category in the log


class CheckpointMismatchError(DataError):
    """A pretrained checkpoint that does not fit the model it is meant to initialise."""


def unwrap_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint file's object (mmengine / mmseg / mmdet save
    ``{'state_dict': ..., 'meta': ...}``, others ``{'model': ...}`` or the bare dict)."""
    state = checkpoint
    for key in ("state_dict", "model", "module"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(f"not a state dict (a {type(state).__name__})")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _countable(keys: Any) -> set[str]:
    # BN's step counter is not a weight: old checkpoints do not have it, nobody misses it
    return {k for k in keys if not k.endswith("num_batches_tracked")}


def fit_prefixes(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Strip ``module.`` (DDP) and ``backbone.`` (a whole segmentor or detector) where that
    makes more keys fit ``expected``; a key set that already fits is returned unchanged."""
    best = state
    for prefix in STRIPPABLE_PREFIXES:
        if not any(k.startswith(prefix) for k in best):
            continue
        stripped = {k[len(prefix) :]: v for k, v in best.items() if k.startswith(prefix)}
        if len(_countable(stripped) & expected) > len(_countable(best) & expected):
            best = stripped
    return best


@dataclass(frozen=True)
class KeyMatch:
    matched: list[str]
    missing: list[str]  # in the module, not (or with another shape) in the checkpoint
    shape_mismatch: list[str]
    unexpected: list[str]  # in the checkpoint, not in the module

    @property
    def fraction(self) -> float:
        total = len(self.matched) + len(self.missing)
        return len(self.matched) / total if total else 1.0


def match_keys(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> KeyMatch:
    expected = _countable(target)
    matched, missing, shapes = [], [], []
    for key in sorted(expected):
        if key not in state:
            missing.append(key)
        elif tuple(state[key].shape) != tuple(target[key].shape):
            shapes.append(key)
            missing.append(key)
        else:
            matched.append(key)
    unexpected = sorted(_countable(state) - expected)
    return KeyMatch(matched, missing, shapes, unexpected)


def _listing(keys: list[str]) -> str:
    head = ", ".join(keys[:_LISTED])
    return head + (f", ... ({len(keys) - _LISTED} more)" if len(keys) > _LISTED else "")


def describe(match: KeyMatch, checkpoint: str, module_name: str) -> str:
    lines = [
        f"pretrained {checkpoint} -> {module_name}: {len(match.matched)} of "
        f"{len(match.matched) + len(match.missing)} keys matched ({match.fraction:.0%}), "
        f"{len(match.missing)} missing, {len(match.unexpected)} unexpected"
    ]
    if match.shape_mismatch:
        lines.append(f"  other shape in the checkpoint: {_listing(match.shape_mismatch)}")
    if match.missing:
        lines.append(f"  missing (stay randomly initialised): {_listing(match.missing)}")
    if match.unexpected:
        lines.append(f"  unexpected (not used): {_listing(match.unexpected)}")
    return "\n".join(lines)


class CheckedPretrainedInit(PretrainedInit):
    """mmengine's ``Pretrained`` initialiser that reports the key match and refuses a
    checkpoint that does not fit (see the module docstring)."""

    def __init__(
        self,
        checkpoint: str,
        prefix: str | None = None,
        map_location: str = "cpu",
        min_matched: float = MIN_MATCHED,
    ) -> None:
        super().__init__(checkpoint, prefix=prefix, map_location=map_location)
        self.min_matched = min_matched

    def __call__(self, module: torch.nn.Module) -> None:
        from mmengine.runner.checkpoint import _load_checkpoint, load_state_dict

        try:
            path = resolve_checkpoint(self.checkpoint)
            state = unwrap_state_dict(_load_checkpoint(path, map_location=self.map_location))
        except (CheckpointMismatchError, PackagedWeightsMissing) as err:
            raise CheckpointMismatchError(
                f"pretrained checkpoint {self.checkpoint}: {err}"
            ) from None
        if self.prefix:
            state = {
                k[len(self.prefix) :]: v for k, v in state.items() if k.startswith(self.prefix)
            }
        target = module.state_dict()
        state = fit_prefixes(state, _countable(target))
        if is_lite_layout(state) and isinstance(
            getattr(module, "blocks", None), torch.nn.Sequential
        ):
            state = lite_to_timm_keys(state, module.blocks)
        match = match_keys(state, target)
        report = describe(match, self.checkpoint, type(module).__name__)
        print_log(report, logger="current")
        if match.fraction < self.min_matched:
            raise CheckpointMismatchError(
                f"pretrained checkpoint {self.checkpoint} does not fit the "
                f"{type(module).__name__} it should initialise: {len(match.matched)} of "
                f"{len(match.matched) + len(match.missing)} keys matched ({match.fraction:.0%}, "
                f"need {self.min_matched:.0%}); {len(match.shape_mismatch)} with another shape, "
                f"{len(match.unexpected)} unexpected. Is it the right architecture and width?\n"
                + report
            )
        load_state_dict(
            module, {k: state[k] for k in match.matched}, strict=False, logger="current"
        )
        if hasattr(module, "_params_init_info"):
            update_init_info(module, init_info=self._get_init_info())


def register_checked_pretrained() -> None:
    """Register :class:`CheckedPretrainedInit` as ``CheckedPretrained`` (mmengine's own
    ``Pretrained`` is left as it is)."""
    WEIGHT_INITIALIZERS.register_module(
        name="CheckedPretrained", module=CheckedPretrainedInit, force=True
    )
