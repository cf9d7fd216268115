# BoxInst on real photos at the cost of det/maskrcnn_lite0_fpn_real_cpu.py: the BoxInst of
# det/boxinst_r18_fpn_real_cpu.py on the same ImageNet-pretrained EfficientNet-Lite0 as the
# Mask R-CNN variants (same weights, freezing, GroupNorm FPN and input normalisation), so the
# comparison is backbone for backbone.
_base_ = ['./boxinst_r18_fpn_real_cpu.py']

model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
                           bgr_to_rgb=True),
    backbone=dict(_delete_=True, type='EfficientNetLite', arch='lite0', out_indices=(1, 2, 3, 4),
                  frozen_stages=0, norm_eval=True,
                  init_cfg=dict(type='CheckedPretrained', checkpoint='efficientnet-lite0')),
    neck=dict(in_channels=[24, 40, 112, 320],
              norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)))
