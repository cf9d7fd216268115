# BoxCaseg Stage 5: a standard mmdet Mask R-CNN trained on Stage 4's proxy masks, with the
# drop-aware mask head (docs/method.md, Stage 5). Inherits mmdet's own R-50-FPN 1x COCO config and
# changes only the dataset (confidence carried to the mask head) and the mask head type.
# Data paths, classes and num_classes are filled in by `boxcaseg train-det` from the dataset
# files themselves (classes are never typed twice).
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']

custom_imports = dict(imports=['boxcaseg.mm.det'], allow_failed_imports=False)

model = dict(
    # From scratch unless a local checkpoint is given (nothing is downloaded at run time).
    backbone=dict(init_cfg=None),
    roi_head=dict(mask_head=dict(type='DropAwareFCNMaskHead', drop_threshold=0.95)))

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadAnnotationsWithConfidence', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputsWithConfidence'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='Resize', scale=(1333, 800), keep_ratio=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                          'scale_factor')),
]
train_dataloader = dict(
    dataset=dict(type='ConfidenceCocoDataset', data_root='', ann_file='',
                 data_prefix=dict(img=''), pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = dict(
    batch_size=1, num_workers=2, persistent_workers=False, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CocoDataset', data_root='', ann_file='', data_prefix=dict(img=''),
                 test_mode=True, pipeline=test_pipeline))
# Predictions are only written here (COCO results files); `boxcaseg eval-det` scores them
# with pycocotools.
test_evaluator = dict(type='CocoMetric', ann_file='', metric=['bbox', 'segm'], format_only=True,
                      outfile_prefix='predictions')
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_last=True))
randomness = dict(seed=0)
