# Real photos on a CPU budget, on ImageNet features: the light Mask R-CNN of
# det/maskrcnn_r18_fpn_real_cpu.py (128-channel FPN, heads, anchors, drop-aware mask loss,
# schedule) with its from-scratch ResNet-18 swapped for the same ImageNet-pretrained
# EfficientNet-Lite0 as Stage 2 (seg/boxcaseg_lite0_real_cpu.py): the backbone, its
# fine-tuning and input normalisation are in _base_/efficientnet_lite0_fpn.py, shared with
# BoxInst (det/boxinst_lite0_fpn_real_cpu.py) so every variant starts from the same weights.
_base_ = ['./maskrcnn_r18_fpn_real_cpu.py', './_base_/efficientnet_lite0_fpn.py']

model = dict(_base_.lite0_fpn, roi_head=_base_.lite0_roi_layers, **_base_.lite0_rpn_nms)
# one iteration on one CPU thread, channels_last (benchmarks/run.py --only stage_speed on a
# 2-core machine): the expected time the log and the Snakemake job's runtime are given
schedule = dict(cpu_seconds_per_iter=1.4)
