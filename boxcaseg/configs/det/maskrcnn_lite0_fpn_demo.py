# CPU demo on ImageNet features: the demo's light Mask R-CNN (det/maskrcnn_r18_fpn_demo.py:
# 128 px, heads, anchors, schedule unchanged) on the ImageNet-pretrained EfficientNet-Lite0
# of the real-photo run (_base_/efficientnet_lite0_fpn.py), shared with the demo's BoxInst.
_base_ = ['./maskrcnn_r18_fpn_demo.py', './_base_/efficientnet_lite0_fpn.py']

model = dict(_base_.lite0_fpn, roi_head=_base_.lite0_roi_layers, **_base_.lite0_rpn_nms)
# one iteration on one CPU thread, channels_last (benchmarks/run.py --only stage_speed on a
# 2-core machine): the expected time the log and the Snakemake job's runtime are given
schedule = dict(cpu_seconds_per_iter=0.5)
