# CPU demo on ImageNet features: the demo's BoxInst (det/boxinst_r18_fpn_demo.py) on the same
# ImageNet-pretrained EfficientNet-Lite0 as the demo's Mask R-CNN variants
# (_base_/efficientnet_lite0_fpn.py), so the comparison is backbone for backbone.
_base_ = ['./boxinst_r18_fpn_demo.py', './_base_/efficientnet_lite0_fpn.py']

model = _base_.lite0_fpn
# one iteration on one CPU thread, channels_last (benchmarks/run.py --only stage_speed on a
# 2-core machine): the expected time the log and the Snakemake job's runtime are given
schedule = dict(cpu_seconds_per_iter=0.5)
