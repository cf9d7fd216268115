# CPU demo: HRNet-W18-small, 64 px crops, batch 16 (8 box + 8 salient), at least 800 iterations,
# from scratch (about 7.5 minutes on one core). Made for the embedded demo dataset (128 px scenes); minutes on a
# laptop. Same model, losses and sampling as the paper configs, smaller everywhere.
_base_ = ['./_base_/boxcaseg_hrnet.py']

crop_size = 64
salient_resize = 72
infer_size = 64  # trained from scratch, the model is scale-sensitive: infer at the crop size
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=(crop_size, crop_size)),
    backbone=dict(
        norm_cfg=norm_cfg,
        extra=dict(
            stage1=dict(num_blocks=(2, )),
            stage2=dict(num_blocks=(2, 2)),
            stage3=dict(num_modules=3, num_blocks=(2, 2, 2)),
            stage4=dict(num_modules=2, num_blocks=(2, 2, 2, 2)))),
    decode_head=dict(norm_cfg=norm_cfg, alpha=0.7))
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='BoxCasegCrop', crop_size=crop_size, salient_resize=salient_resize,
         center_shift=0.25, scale_range=(0.5, 1.5), flip_prob=0.5),
    dict(type='PackSegInputs', meta_keys=('img_path', 'sample_kind', 'ann_id', 'ori_shape', 'img_shape')),
]
global_batch_size = 16
train_dataloader = dict(batch_size=global_batch_size, num_workers=2, batch_sampler=dict(box_per_batch=8),
                        dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(optimizer=dict(lr=0.02))
max_iters = 800
# The length grows with the data (boxcaseg/schedule.py): 12 passes over the training boxes
# (box_per_batch of them an iteration), at least 800 iterations (47 passes of the person run's
# 187 boxes, what the recipe was tuned on), at most 8000; an explicit max_iters replaces it.
schedule = dict(per='boxes', passes=12, min_iters=max_iters, max_iters=8000)
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters + 1)
default_hooks = dict(logger=dict(interval=50), checkpoint=dict(interval=200))
custom_hooks = [
    dict(type='MIoUStarHook', ann_file=None, interval=0, input_size=infer_size, batch_size=32),
]
