# The paper's COCO detector (docs/method.md, Stage 5): Mask R-CNN R-101-FPN, mmdet's 1x schedule:
# 12 epochs, GLOBAL batch 16, lr 0.02 for it, steps at 8 and 11. Give an ImageNet R-101
# checkpoint as detection.pretrained (nothing is downloaded).
_base_ = ['./maskrcnn_r50_fpn_1x_coco.py']

model = dict(backbone=dict(depth=101))
