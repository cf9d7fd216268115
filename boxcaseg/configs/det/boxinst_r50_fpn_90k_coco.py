# BoxInst as mmdetection ships it for COCO: R-50-FPN, multi-scale training, 90k iterations,
# GLOBAL batch 16, lr 0.01 (mmdet's model zoo: 30.8 mask AP with an ImageNet backbone; give
# one as detection.pretrained).
_base_ = ['./_base_/boxcaseg_boxinst.py']
