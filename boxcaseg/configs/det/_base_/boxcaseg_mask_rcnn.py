# BoxCaseg Stage 5: a standard mmdet Mask R-CNN trained on Stage 4's proxy masks, with the
# drop-aware mask head (docs/method.md, Stage 5). Inherits mmdet's own R-50-FPN 1x COCO config and
# changes only the dataset (confidence carried to the mask head), the mask head type and the
# test loop (coco_test.py, shared with BoxInst).
# Data paths, classes and num_classes are filled in by `boxcaseg train-det` from the dataset
# files themselves (classes are never typed twice).
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py', './coco_test.py']

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
train_dataloader = dict(
    dataset=dict(type='ConfidenceCocoDataset', data_root='', ann_file='',
                 data_prefix=dict(img=''), pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
# Predictions are only written here (COCO results files); `boxcaseg eval-det` scores them
# with pycocotools: the test loop of every variant (coco_test.py).
test_dataloader = _base_.coco_test.dataloader
test_pipeline = test_dataloader.dataset.pipeline
test_evaluator = _base_.coco_test.evaluator
del _base_.coco_test  # a shared piece, not a setting
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_last=True))
randomness = dict(seed=0)
