# BoxInst on real photos at the cost of det/maskrcnn_lite0_fpn_real_cpu.py: the BoxInst of
# det/boxinst_r18_fpn_real_cpu.py on the same ImageNet-pretrained EfficientNet-Lite0 as the
# Mask R-CNN variants (_base_/efficientnet_lite0_fpn.py: same weights, freezing, GroupNorm FPN
# and input normalisation), so the comparison is backbone for backbone.
_base_ = ['./boxinst_r18_fpn_real_cpu.py', './_base_/efficientnet_lite0_fpn.py']

model = _base_.lite0_fpn
# one iteration on one CPU thread, channels_last (benchmarks/run.py --only stage_speed on a
# 2-core machine): the expected time the log and the Snakemake job's runtime are given
schedule = dict(cpu_seconds_per_iter=1.3)
