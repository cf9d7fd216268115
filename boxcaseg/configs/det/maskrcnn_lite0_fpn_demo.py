# CPU demo on ImageNet features: the demo's light Mask R-CNN (det/maskrcnn_r18_fpn_demo.py:
# 128 px, heads, anchors, schedule unchanged) on the ImageNet-pretrained EfficientNet-Lite0
# of the real-photo run (_base_/efficientnet_lite0_fpn.py), shared with the demo's BoxInst.
_base_ = ['./maskrcnn_r18_fpn_demo.py', './_base_/efficientnet_lite0_fpn.py']

model = _base_.lite0_fpn
