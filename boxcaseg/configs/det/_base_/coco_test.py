# The test loop every Stage 5 detector shares, Mask R-CNN and BoxInst alike (written once for
# _base_/boxcaseg_mask_rcnn.py and _base_/boxcaseg_boxinst.py, so every variant is evaluated
# the same way): mmdet's COCO test pipeline, restated only to read pixels as stored (the EXIF
# orientation tag ignored, as every loader of the project: boxcaseg/data/images.py) and without
# loading annotations; data paths filled in by `boxcaseg eval-det`. The predictions are only
# written (COCO results files); `boxcaseg eval-det` scores them with pycocotools.
# A base takes it with `test_dataloader = _base_.coco_test.dataloader` (and `.evaluator`) and
# then drops the piece itself (`del _base_.coco_test`: a shared piece, not a setting).
coco_test = dict(
    dataloader=dict(
        batch_size=1, num_workers=2, persistent_workers=False, drop_last=False,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CocoDataset', data_root='', ann_file='', data_prefix=dict(img=''),
                     test_mode=True, pipeline=[
                         dict(type='LoadImageFromFile', color_type='color_ignore_orientation'),
                         dict(type='Resize', scale=(1333, 800), keep_ratio=True),
                         dict(type='PackDetInputs',
                              meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                                         'scale_factor')),
                     ])),
    evaluator=dict(type='CocoMetric', ann_file='', metric=['bbox', 'segm'], format_only=True,
                   outfile_prefix='predictions'))
