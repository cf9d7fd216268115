# The strongest peer in the same run: mmdetection's own BoxInst (Tian et al., CVPR 2021; its
# detector, heads, projection + colour-pairwise losses and data preprocessor, from mmdet's
# registry: no copy of its code), trained on the SAME box-only file the other variants start
# from (train.boxes.json: no mask anywhere) and evaluated by the same pycocotools rule.
# Inherits mmdet's R-50 90k config; data paths and classes are filled in by `boxcaseg
# train-det` from the dataset files.
_base_ = ['mmdet::boxinst/boxinst_r50_fpn_ms-90k_coco.py', './coco_test.py']

# the project's registered pieces (the EfficientNet-Lite backbone, the checked initialiser)
custom_imports = dict(imports=['boxcaseg.mm.det'], allow_failed_imports=False)

model = dict(
    # From scratch unless a local checkpoint is given (detection.pretrained; nothing is
    # downloaded). `boxcaseg train-det` unfreezes the stem and BN statistics when from scratch.
    backbone=dict(init_cfg=None))

# mmdet's multi-scale training pipeline, restated only to read pixels as stored (the EXIF
# orientation tag ignored, as every loader of the project: boxcaseg/data/images.py).
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=False, poly2mask=False),
    dict(type='RandomChoiceResize',
         scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)],
         keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
# The same dataset files and evaluation as the Mask R-CNN variants (boxcaseg_mask_rcnn.py; the
# test loop of every variant: coco_test.py).
train_dataloader = dict(
    dataset=dict(type='CocoDataset', data_root='', ann_file='', data_prefix=dict(img=''),
                 pipeline=train_pipeline))
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = _base_.coco_test.dataloader
test_pipeline = test_dataloader.dataset.pipeline
test_cfg = dict(type='TestLoop')
test_evaluator = _base_.coco_test.evaluator
del _base_.coco_test  # a shared piece, not a setting
# mmdet's 90k schedule: global batch 16 (8 GPUs x 2), lr 0.01 for it
global_batch_size = 16
default_hooks = dict(checkpoint=dict(max_keep_ckpts=2, save_last=True))
randomness = dict(seed=0)
