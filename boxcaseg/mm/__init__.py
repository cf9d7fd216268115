"""Thin OpenMMLab adapters, registered in mmseg's / mmdet's registries and pulled into configs
with ``custom_imports = dict(imports=['boxcaseg.mm.seg'])`` (or ``boxcaseg.mm.det``).

Importing any of them applies, once: the torch >= 2.6 checkpoint-loading fix, and the checked
``Pretrained`` initialiser (:mod:`boxcaseg.mm.pretrained`); and registers the training-loop
pieces both stages share (:mod:`boxcaseg.mm.loops`) and the ImageNet-pretrained backbone both
stages can build (:mod:`boxcaseg.mm.backbones`, in mmengine's root registry, which mmseg's and
mmdet's registries fall back to).
"""

from boxcaseg.compat import patch_mmengine_checkpoint_loading
from boxcaseg.mm import (
    backbones,  # noqa: F401  (registers EfficientNetLite)
    loops,  # noqa: F401  (registers the loop and the batch record hook)
)
from boxcaseg.mm.pretrained import register_checked_pretrained

patch_mmengine_checkpoint_loading()
register_checked_pretrained()
