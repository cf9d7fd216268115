# BoxCaseg Stage 2 (docs/method.md): class-agnostic segmentation, HRNet-W18 backbone (mmseg's),
# box head + salient head, trained jointly on box-instance crops and salient images.
# Child configs change the backbone width, crop sizes and the schedule. Paths of the Stage 1
# files (ann_file, salient_file, the mIoU* ann_file) are filled in by `boxcaseg train-seg`.
_base_ = ['mmseg::_base_/models/fcn_hr18.py', 'mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['boxcaseg.mm.seg'], allow_failed_imports=False)

crop_size = 288          # training crops (box and salient), docs/method.md Stage 1
salient_resize = 320     # salient images: resize to this, then random crop crop_size
infer_size = 320         # exact-box crops at inference (Stage 3 and mIoU*)
norm_cfg = dict(type='SyncBN', requires_grad=True)  # reverted to BN when not distributed

model = dict(
    type='BoxCasegSegmentor',
    pretrained=None,  # a local ImageNet HRNet checkpoint path, or None to train from scratch
    data_preprocessor=dict(size=(crop_size, crop_size)),
    backbone=dict(norm_cfg=norm_cfg),
    decode_head=dict(
        _delete_=True,
        type='BoxCasegHead',
        in_channels=[18, 36, 72, 144],
        channels=270,
        alpha=0.7,           # salient = alpha * FCN head + (1 - alpha) * transfer head (VOC 0.7, COCO 0.6)
        mlp_ratio=4,         # transfer MLP: C -> 4C -> C
        leaky_slope=0.1,
        norm_cfg=norm_cfg),
    loss_mil=dict(type='BoxMILLoss', loss_weight=1.0),
    loss_pair=dict(type='PairwiseSmoothLoss', loss_weight=0.05),
    loss_sal=dict(type='SalientBCELoss', loss_weight=1.0),
    train_cfg=dict(),
    # inference (Stage 3 and the mIoU* hook): threshold on min-max normalised probabilities;
    # flip = average with the mirrored crop (not in the paper)
    test_cfg=dict(_delete_=True, threshold=0.5, flip=False))

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='BoxCasegCrop', crop_size=crop_size, salient_resize=salient_resize,
         center_shift=0.25, scale_range=(0.5, 1.5), flip_prob=0.5),
    dict(type='PackSegInputs', meta_keys=('img_path', 'sample_kind', 'ann_id', 'ori_shape', 'img_shape')),
]
# The GLOBAL batch (all GPUs together; docs/method.md: 32 = 2 GPUs x 16) and the lr below is the lr
# for it. `boxcaseg train-seg` sets train_dataloader.batch_size = global / GPUs, and scales the
# lr linearly (auto_scale_lr) only when the global batch does not divide.
global_batch_size = 32
train_dataloader = dict(
    batch_size=global_batch_size,  # per process: set from global_batch_size at launch
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    # box_per_batch=None mixes box and salient samples uniformly (VOC); an int fixes the
    # number of box samples per GLOBAL batch, the rest salient (COCO: 22 of 32); each rank
    # takes its share.
    batch_sampler=dict(type='KindRatioBatchSampler', box_per_batch=None, overlap_skip_prob=0.0),
    dataset=dict(type='BoxSalientDataset', ann_file='', salient_file='', overlap_iou=0.5,
                 pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.004, momentum=0.9, weight_decay=1e-4),
    clip_grad=None)
max_iters = 46000  # VOC: about 40 epochs of (box instances + salient images) / 32
# `boxcaseg train-seg` sets `end` of poly schedules to train_cfg.max_iters after overrides.
param_scheduler = [dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=max_iters, by_epoch=False)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters + 1)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000, max_keep_ckpts=2,
                    save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'))
custom_hooks = [
    dict(type='MIoUStarHook', ann_file=None, interval=0, input_size=infer_size, batch_size=16),
]
randomness = dict(seed=0)
log_processor = dict(by_epoch=False)
