"""Stage 5 adapters for mmdetection: a COCO dataset that carries each instance's proxy-mask
confidence to the mask head, the drop-aware mask head, and the vectorised CPU RoIAlign and NMS
the Lite0 configs use (mmcv's / torchvision's results exactly; added to ``mmcv.ops`` and
``mmcv.ops.nms``, where mmdet's RoI extractors and mmcv's ``batched_nms`` look them up)."""

from boxcaseg.mm import patch_mmengine_checkpoint_loading  # noqa: F401  (applies the fix)
from boxcaseg.mm.det.dataset import (
    ConfidenceCocoDataset,
    LoadAnnotationsWithConfidence,
    PackDetInputsWithConfidence,
)
from boxcaseg.mm.det.mask_head import DropAwareFCNMaskHead
from boxcaseg.mm.det.nms import block_nms, register_in_mmcv_nms
from boxcaseg.mm.det.roi_align import GatherRoIAlign, register_in_mmcv_ops

register_in_mmcv_ops()
register_in_mmcv_nms()

__all__ = [
    "ConfidenceCocoDataset",
    "LoadAnnotationsWithConfidence",
    "PackDetInputsWithConfidence",
    "DropAwareFCNMaskHead",
    "GatherRoIAlign",
    "block_nms",
]
