"""BoxCaseg: box-supervised instance segmentation by class-agnostic learning with salient images.

The package holds all logic of the workflow: pure numpy/torch functions for the algorithmic
core (crops, losses, merge and drop, RLE, metrics) and thin registered OpenMMLab adapters
under :mod:`boxcaseg.mm`. Importing the top-level package stays cheap (no torch, no mmengine).
"""

import warnings

# mmengine 0.10 imports pkg_resources (and reloads it) each time it looks up an installed
# package, e.g. for every `mmdet::` / `mmseg::` base of a config: setuptools then warns that
# pkg_resources is deprecated, up to three times at the top of every command and rule log. It is
# mmengine's to fix, and harmless here: constraints.txt pins setuptools below 81, which still has
# pkg_resources (mmcv's build needs it). Only that one warning is silenced.
warnings.filterwarnings(
    "ignore", message=r"pkg_resources is deprecated as an API", category=UserWarning
)

__version__ = "0.1.0"
