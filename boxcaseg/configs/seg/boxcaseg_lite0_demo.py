# CPU demo on ImageNet features: the demo recipe of seg/boxcaseg_hr18s_demo.py (64 px crops,
# 8 box + 8 salient samples a batch, losses, schedule: all unchanged) with its from-scratch
# HRNet-W18-small swapped for the ImageNet-pretrained EfficientNet-Lite0 of the real-photo run
# (_base_/efficientnet_lite0.py: weights, freezing, input normalisation).
_base_ = ['./boxcaseg_hr18s_demo.py', './_base_/efficientnet_lite0.py']

model = _base_.lite0_encoder
# one iteration on one CPU thread, channels_last (benchmarks/run.py --only stage_speed on a
# 2-core machine): the expected time the log and the Snakemake job's runtime are given
schedule = dict(cpu_seconds_per_iter=0.31)
