# Real photos on a CPU budget (the coco128-seg run, config/coco128.yaml): the demo's light
# Mask R-CNN at 256 px (longer side), default anchors (32 px and up), 300 iterations of
# batch 4, from scratch. Far from a converged COCO model: it makes the variants
# comparable under one small budget, nothing more.
_base_ = ['./maskrcnn_r18_fpn_demo.py']

# RoIAlign keeps 2 samples per bin here (the demo's one is for its few-pixel RoIs): a person
# RoI at 256 px spans tens of feature pixels, one sample per bin would alias.
model = dict(
    rpn_head=dict(anchor_generator=dict(scales=[8])),
    roi_head=dict(bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2)),
                  mask_roi_extractor=dict(roi_layer=dict(sampling_ratio=2))))
scale = (256, 256)
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadAnnotationsWithConfidence', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputsWithConfidence'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
max_iters = 300
train_cfg = dict(max_iters=max_iters, val_interval=max_iters + 1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[int(max_iters * 0.75)], gamma=0.1),
]
