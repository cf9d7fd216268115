# The paper's VOC setting (docs/method.md, Stage 2): HRNetV2-W48, 288 px crops, uniform mixing of
# box instances and salient images, SGD lr 0.004, poly 0.9, global batch 32 (SyncBN),
# about 40 epochs, alpha 0.7. Give an ImageNet HRNet-W48 checkpoint as model.pretrained.
_base_ = ['./_base_/boxcaseg_hrnet.py']

model = dict(
    backbone=dict(extra=dict(
        stage2=dict(num_channels=(48, 96)),
        stage3=dict(num_channels=(48, 96, 192)),
        stage4=dict(num_channels=(48, 96, 192, 384)))),
    decode_head=dict(in_channels=[48, 96, 192, 384], channels=720, alpha=0.7))
global_batch_size = 32  # all GPUs together (the authors: 2 GPUs x 16)
