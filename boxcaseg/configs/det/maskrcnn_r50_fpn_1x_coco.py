# mmdet's standard COCO 1x schedule with R-50 (the paper used R-101: det/maskrcnn_r101_fpn_1x_coco.py):
# 12 epochs, GLOBAL batch 16 (mmdet: 8 GPUs x 2), lr 0.02 for it, steps at 8 and 11.
_base_ = ['./_base_/boxcaseg_mask_rcnn.py']

# `boxcaseg train-det` sets train_dataloader.batch_size = 16 / GPUs
global_batch_size = 16
train_dataloader = dict(batch_size=2)
