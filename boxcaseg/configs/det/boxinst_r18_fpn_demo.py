# BoxInst at the cost of the demo Mask R-CNN (det/maskrcnn_r18_fpn_demo.py): ResNet-18, a
# 128-channel FPN, the demo's 128 px images, the same schedule (at least 300 iterations) of
# global batch 4, from scratch. Its heads and losses are mmdet's, unchanged but for the sizes,
# size_of_interest and the lr (below).
_base_ = ['./_base_/boxcaseg_boxinst.py']

fpn = 128
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    # mmdet drops the bottom 10 px from the colour similarity (made for 800 px COCO images):
    # none at 128 px
    data_preprocessor=dict(bottom_pixels_removed=0),
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False, norm_cfg=norm_cfg),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=fpn),
    bbox_head=dict(in_channels=fpn, feat_channels=fpn, stacked_convs=2),
    # the pairwise term ramps up over the first 1/9 of training, as in mmdet's 10k of 90k.
    # size_of_interest 1 instead of mmdet's 8: the mask head sees each location's offset from
    # the instance in units of stride x size_of_interest; at 8 an object on its level spans
    # about +-0.25 of them, and in a few hundred iterations (mmdet trains 90k) the controller
    # never grows position weights large enough: every instance got the same image-wide blob
    # and the masks collapsed (0.00 mask AP on the demo in 3 of 3 seeds, masks 14x their
    # boxes at 4). At 1 the offsets span about +-2 and the masks localise within 100
    # iterations (docs/results.md, "BoxInst").
    mask_head=dict(warmup_iters=33, size_of_interest=1,
                   mask_feature_head=dict(in_channels=fpn, feat_channels=64)),
    test_cfg=dict(max_per_img=50))

scale = (128, 128)
# one training scale instead of mmdet's multi-scale choice of 640-800 px: a training pipeline of
# its own, not the base's with a new scale
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
# the base's test pipeline at this scale (mmengine's `_base_.` syntax: only the scale differs)
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = scale  # Resize
global_batch_size = 4
train_dataloader = dict(
    batch_size=global_batch_size, num_workers=2, pin_memory=False,
    dataset=dict(pipeline=train_pipeline, filter_cfg=dict(filter_empty_gt=True, min_size=4)))
test_dataloader = dict(num_workers=1, dataset=dict(pipeline=test_pipeline))
max_iters = 300
# The length grows with the data, as the Mask R-CNN variants' (det/maskrcnn_r18_fpn_demo.py)
schedule = dict(per='images', passes=12, min_iters=max_iters, max_iters=6000)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)
# lr 0.005 (the Mask R-CNN variants: 0.01). mmdet's BoxInst takes 0.01 for 16 images; at 0.01
# for 4 its dynamic mask head diverged in 1 of 3 demo seeds (masks a third of their boxes,
# mask AP 0.01); at 0.005 the three seeds gave 23.6, 23.7, 26.4 (docs/results.md, "BoxInst")
optim_wrapper = dict(optimizer=dict(lr=0.005), clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[int(max_iters * 0.75)], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(by_epoch=False, interval=200))
