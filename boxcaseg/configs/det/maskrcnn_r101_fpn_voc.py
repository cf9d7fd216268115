# The paper's VOC setting (docs/method.md, Stage 5): R-101-FPN, 800/1333, flip, 22.5k iterations,
# GLOBAL batch 6 (all GPUs together), lr 0.0075 for it, one step at 15k, warmup factor 1/3. Give an ImageNet R-101 checkpoint as the backbone's
# init_cfg (config.yaml: detection.pretrained) to match the paper.
_base_ = ['./_base_/boxcaseg_mask_rcnn.py']

model = dict(backbone=dict(depth=101))
# `boxcaseg train-det` sets train_dataloader.batch_size = global / GPUs (auto_scale_lr only when
# 6 does not divide: the lr then follows the real global batch linearly).
global_batch_size = 6
train_dataloader = dict(batch_size=global_batch_size,
                        sampler=dict(type='InfiniteSampler', shuffle=True))
max_iters = 22500
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters,
                 val_interval=max_iters + 1)
optim_wrapper = dict(optimizer=dict(lr=0.0075))
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 3, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False, milestones=[15000],
         gamma=0.1),
]
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2500))
log_processor = dict(by_epoch=False)
