"""config.yaml sections -> what the stages need: mm ``cfg_options``, dataset settings.

Each rule passes one section (as JSON) to the ``boxcaseg`` command; the functions here turn
the section's shortcuts into dotted overrides of the mmseg / mmdet config. ``null`` means
"keep the model config's value", so the model config stays the one home of the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _set(options: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        options[key] = value


def _workers(options: dict[str, Any], num_workers: int | None) -> None:
    if num_workers is not None:
        options["train_dataloader.num_workers"] = num_workers
        options["train_dataloader.persistent_workers"] = num_workers > 0


def segmentation_options(section: dict[str, Any]) -> dict[str, Any]:
    """``segmentation`` section -> mmseg cfg_options."""
    opts: dict[str, Any] = {}
    _set(opts, "train_cfg.max_iters", section.get("max_iters"))
    _set(opts, "global_batch_size", section.get("batch_size"))  # all GPUs together
    _set(opts, "train_dataloader.batch_sampler.box_per_batch", section.get("box_per_batch"))
    if section.get("uniform_mixing"):
        opts["train_dataloader.batch_sampler.box_per_batch"] = None
    _set(opts, "train_dataloader.batch_sampler.overlap_skip_prob", section.get("overlap_skip_prob"))
    _set(opts, "train_dataloader.batch_sampler.class_balance", section.get("class_balance"))
    _set(opts, "optim_wrapper.optimizer.lr", section.get("lr"))
    _set(opts, "model.decode_head.alpha", section.get("alpha"))
    _set(opts, "model.loss_pair.loss_weight", section.get("pair_weight"))
    _set(opts, "model.loss_pair.warmup_ratio", section.get("pair_warmup"))
    _set(opts, "model.pretrained", section.get("pretrained"))
    _workers(opts, section.get("num_workers"))
    _set(opts, "randomness.seed", section.get("seed"))
    opts.update(section.get("cfg_options") or {})
    return opts


def detection_options(section: dict[str, Any]) -> dict[str, Any]:
    """``detection`` section -> mmdet cfg_options."""
    opts: dict[str, Any] = {}
    _set(opts, "train_cfg.max_iters", section.get("max_iters"))
    _set(opts, "global_batch_size", section.get("batch_size"))  # all GPUs together
    _set(opts, "optim_wrapper.optimizer.lr", section.get("lr"))
    if section.get("pretrained"):  # _delete_: the shipped configs have init_cfg=None there
        opts["model.backbone.init_cfg"] = dict(
            _delete_=True, type="CheckedPretrained", checkpoint=section["pretrained"]
        )
    _workers(opts, section.get("num_workers"))
    _set(opts, "randomness.seed", section.get("seed"))
    opts.update(section.get("cfg_options") or {})
    return opts


def salient_sources(salient: dict[str, Any] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``data.salient`` as a list of sources (it may be one source, a list, or empty)."""
    if not salient:
        return []
    return [salient] if isinstance(salient, dict) else list(salient)


def generated_data_config(
    generated_dir: str | Path, extra_salient: dict[str, Any] | list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The ``data`` section (splits + salient) that imports a generated dataset (the demo, or
    sets derived from one dataset), read from the ``manifest.json`` its generator wrote; the
    config's own salient sources (``extra_salient``) come after the generated one."""
    from boxcaseg.data.coco import load_json

    manifest = load_json(Path(generated_dir) / "manifest.json")
    return {
        "splits": manifest["splits"],
        "salient": [manifest["salient"], *salient_sources(extra_salient)],
    }
