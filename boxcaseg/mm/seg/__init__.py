"""Stage 2 adapters for mmsegmentation: dataset, crop transform, batch sampler, losses,
two-head model and the mIoU* hook."""

from boxcaseg.mm import patch_mmengine_checkpoint_loading  # noqa: F401  (applies the fix)
from boxcaseg.mm.seg.dataset import BoxCasegCrop, BoxSalientDataset, KindRatioBatchSampler
from boxcaseg.mm.seg.hooks import MIoUStarHook
from boxcaseg.mm.seg.losses import (
    BoxMILLoss,
    ColourPairwiseLoss,
    PairwiseSmoothLoss,
    SalientBCELoss,
)
from boxcaseg.mm.seg.model import BoxCasegHead, BoxCasegSegmentor

__all__ = [
    "BoxCasegCrop",
    "BoxSalientDataset",
    "KindRatioBatchSampler",
    "MIoUStarHook",
    "BoxMILLoss",
    "PairwiseSmoothLoss",
    "ColourPairwiseLoss",
    "SalientBCELoss",
    "BoxCasegHead",
    "BoxCasegSegmentor",
]
