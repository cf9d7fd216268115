# CPU demo: a light Mask R-CNN (ResNet-18, 128-channel FPN) at the demo's native 128 px,
# iteration based, from scratch, minutes on a laptop. Same heads and drop-aware mask loss as
# the paper configs, smaller everywhere: anchors start at 16 px (scale 4) for the small
# objects, fewer proposals and sampled RoIs, RoIAlign with one sample per bin: mmcv's CPU
# RoIAlign is scalar code, and at 2 samples per bin its forward + backward took 0.2 of the
# 0.89 s step (one thread); at one sample 0.77 s. The RoIs of 128 px images are a few feature
# pixels wide, so a 7x7 (14x14) bin holds about one pixel anyway.
_base_ = ['./_base_/boxcaseg_mask_rcnn.py']

fpn = 128
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    backbone=dict(depth=18, frozen_stages=-1, norm_eval=False, norm_cfg=norm_cfg),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=fpn),
    rpn_head=dict(in_channels=fpn, feat_channels=fpn, anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=fpn, roi_layer=dict(sampling_ratio=1)),
        bbox_head=dict(in_channels=fpn, fc_out_channels=256),
        mask_roi_extractor=dict(out_channels=fpn, roi_layer=dict(sampling_ratio=1)),
        mask_head=dict(in_channels=fpn, num_convs=2, conv_out_channels=64)),
    # fewer proposals and sampled RoIs than mmdet's defaults (made for 1333x800 COCO images)
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300),
                   rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300), rcnn=dict(max_per_img=50)))

scale = (128, 128)
# the base's pipelines at this scale (mmengine's `_base_.` syntax: only the scale differs)
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = scale  # Resize
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = scale  # Resize
global_batch_size = 4
train_dataloader = dict(
    batch_size=global_batch_size, num_workers=2,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(pipeline=train_pipeline, filter_cfg=dict(filter_empty_gt=True, min_size=4)))
test_dataloader = dict(num_workers=1, dataset=dict(pipeline=test_pipeline))
max_iters = 300
# The length grows with the data (boxcaseg/schedule.py): 12 passes over the training images
# (the global batch an iteration), at least 300 iterations, at most 6000.
schedule = dict(per='images', passes=12, min_iters=max_iters, max_iters=6000)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters + 1)
# lr 0.01: at 0.02, from scratch, the weak variant's classifier collapsed to background in 2 of
# 2 seeds (few kept masks leave little mask-loss signal to shape the features early on).
optim_wrapper = dict(optimizer=dict(lr=0.01), clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[int(max_iters * 0.75)], gamma=0.1),
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(by_epoch=False, interval=200))
log_processor = dict(by_epoch=False)
