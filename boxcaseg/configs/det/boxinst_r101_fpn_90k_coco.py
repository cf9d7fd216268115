# BoxInst R-101-FPN, COCO 90k (mmdet's boxinst_r101_fpn_ms-90k_coco.py).
_base_ = ['./boxinst_r50_fpn_90k_coco.py']

model = dict(backbone=dict(depth=101))
