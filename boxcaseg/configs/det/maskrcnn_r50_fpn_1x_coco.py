# COCO 1x (method.md: the authors used R-101-FPN 1x on COCO; swap in depth=101 for that):
# mmdet's standard schedule, 12 epochs, batch 16 (8 GPUs x 2), lr 0.02, steps at 8 and 11.
_base_ = ['./_base_/boxcaseg_mask_rcnn.py']
