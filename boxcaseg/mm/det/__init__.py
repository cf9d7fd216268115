"""Stage 5 adapters for mmdetection: a COCO dataset that carries each instance's proxy-mask
confidence to the mask head, and the drop-aware mask head."""

from boxcaseg.mm import patch_mmengine_checkpoint_loading  # noqa: F401  (applies the fix)
from boxcaseg.mm.det.dataset import (
    ConfidenceCocoDataset,
    LoadAnnotationsWithConfidence,
    PackDetInputsWithConfidence,
)
from boxcaseg.mm.det.mask_head import DropAwareFCNMaskHead

__all__ = [
    "ConfidenceCocoDataset",
    "LoadAnnotationsWithConfidence",
    "PackDetInputsWithConfidence",
    "DropAwareFCNMaskHead",
]
