"""Compatibility fixes between the pinned OpenMMLab stack and current torch, applied once.

torch >= 2.6 makes ``torch.load`` default to ``weights_only=True``. mmengine 0.10.7 calls
``torch.load`` without the argument, so loading its own checkpoints (which pickle a
``HistoryBuffer``, numpy scalars and the message hub) fails with "Unsupported global".
Instead of asking users to export ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``, we re-register
mmengine's local-file checkpoint loader with ``weights_only=False``. Only mmengine's own
checkpoint path is affected (``load_checkpoint``, ``Runner.resume``, ``init_cfg=Pretrained``);
every other ``torch.load`` in the process keeps torch's safe default.
"""

from __future__ import annotations

import os
from typing import Any

_PATCHED = False


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's ``load_from_local`` (same name: mmengine logs it) with an explicit ``weights_only=False``.

    The checkpoints are the ones this pipeline wrote or a file the user named in config,
    so unpickling them is as trusted as running the config itself.
    """
    import torch

    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(f"checkpoint {filename} does not exist")
    return torch.load(filename, map_location=map_location, weights_only=False)


def patch_mmengine_checkpoint_loading() -> None:
    """Make mmengine load local checkpoints on torch >= 2.6. Idempotent."""
    global _PATCHED
    if _PATCHED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader

    CheckpointLoader.register_scheme(prefixes="", loader=load_from_local, force=True)
    _PATCHED = True
