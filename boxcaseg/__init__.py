"""BoxCaseg: box-supervised instance segmentation by class-agnostic learning with salient images.

The package holds all logic of the workflow: pure numpy/torch functions for the algorithmic
core (crops, losses, merge and drop, RLE, metrics) and thin registered OpenMMLab adapters
under :mod:`boxcaseg.mm`. Importing the top-level package stays cheap (no torch, no mmengine).
"""

__version__ = "0.1.0"
