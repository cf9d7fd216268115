# The paper's VOC setting (method.md, Stage 4): R-101-FPN, 800/1333, flip, 22.5k iterations,
# batch 6, lr 0.0075, one step at 15k. Give an ImageNet R-101 checkpoint as the backbone's
# init_cfg (config.yaml: detection.pretrained) to match the paper.
_base_ = ['./_base_/boxcaseg_mask_rcnn.py']

model = dict(backbone=dict(depth=101))
train_dataloader = dict(batch_size=6, sampler=dict(type='InfiniteSampler', shuffle=True))
max_iters = 22500
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters + 1)
optim_wrapper = dict(optimizer=dict(lr=0.0075))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[15000],
         gamma=0.1),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2500))
log_processor = dict(by_epoch=False)
