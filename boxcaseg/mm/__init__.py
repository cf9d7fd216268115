"""Thin OpenMMLab adapters, registered in mmseg's / mmdet's registries and pulled into configs
with ``custom_imports = dict(imports=['boxcaseg.mm.seg'])`` (or ``boxcaseg.mm.det``).

Importing any of them applies the torch >= 2.6 checkpoint-loading fix once.
"""

from boxcaseg.compat import patch_mmengine_checkpoint_loading

patch_mmengine_checkpoint_loading()
