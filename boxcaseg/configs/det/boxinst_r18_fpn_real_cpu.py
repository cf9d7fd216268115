# BoxInst on real photos at the cost of det/maskrcnn_r18_fpn_real_cpu.py: the demo BoxInst at
# 256 px (longer side), the same iterations and global batch, from scratch.
_base_ = ['./boxinst_r18_fpn_demo.py']

scale = (256, 256)
# the parent's pipelines at this scale (mmengine's `_base_.` syntax: only the scale differs)
train_pipeline = _base_.train_pipeline
train_pipeline[2].scale = scale  # Resize
test_pipeline = _base_.test_pipeline
test_pipeline[1].scale = scale  # Resize
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
