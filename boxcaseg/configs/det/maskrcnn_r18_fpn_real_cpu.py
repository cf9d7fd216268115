# Real photos on a CPU budget (the coco128-seg run, config/coco128.yaml): the demo's light
# Mask R-CNN at 256 px (longer side), default anchors (32 px and up), at least 300 iterations
# (the parent's data-scaled schedule) of batch 4, from scratch. Far from a converged COCO model: it makes the variants
# comparable under one small budget, nothing more.
_base_ = ['./maskrcnn_r18_fpn_demo.py']

# RoIAlign keeps 2 samples per bin here (the demo's one is for its few-pixel RoIs): a person
# RoI at 256 px spans tens of feature pixels, one sample per bin would alias.
model = dict(
    rpn_head=dict(anchor_generator=dict(scales=[8])),
    roi_head=dict(bbox_roi_extractor=dict(roi_layer=dict(sampling_ratio=2)),
                  mask_roi_extractor=dict(roi_layer=dict(sampling_ratio=2))))
scale = (256, 256)
# the parent's pipelines at this scale (mmengine's `_base_.` syntax: only the scale differs)
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = scale  # Resize
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = scale  # Resize
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
