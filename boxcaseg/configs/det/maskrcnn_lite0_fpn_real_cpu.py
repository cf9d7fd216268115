# Real photos on a CPU budget, on ImageNet features: the light Mask R-CNN of
# det/maskrcnn_r18_fpn_real_cpu.py (128-channel FPN, heads, anchors, drop-aware mask loss,
# schedule) with its from-scratch ResNet-18 swapped for the same ImageNet-pretrained
# EfficientNet-Lite0 as Stage 2 (seg/boxcaseg_lite0_real_cpu.py; boxcaseg/mm/backbones.py).
# Every Mask R-CNN variant (weak, full, box, grabcut) and BoxInst
# (det/boxinst_lite0_fpn_real_cpu.py) start from the same weights, so they stay comparable.
# Fine-tuned as detection practice does with small batches: stem frozen, backbone BN
# statistics frozen (norm_eval), and GroupNorm in the FPN, the first new layers. The Lite
# trunk's block outputs are not normalised (std about 3-11 on a photo, against about 1 after a
# ResNet stage), so without GN the heads start from huge logits (mask loss 16 at the first
# iterations) and collapse; docs/results.md has what GN bought. Inputs RGB in [-1, 1], as the
# weights were trained.
_base_ = ['./maskrcnn_r18_fpn_real_cpu.py']

model = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
                           bgr_to_rgb=True),
    backbone=dict(_delete_=True, type='EfficientNetLite', arch='lite0', out_indices=(1, 2, 3, 4),
                  frozen_stages=0, norm_eval=True,
                  init_cfg=dict(type='CheckedPretrained', checkpoint='efficientnet-lite0')),
    neck=dict(in_channels=[24, 40, 112, 320],
              norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)))
