"""Training that grows with the data (boxcaseg/schedule.py): iterations from passes over the
boxes or images, the lr schedule following, the expected time, the Snakemake runtime."""

from __future__ import annotations

import json

import pytest

from boxcaseg.engine import load_config
from boxcaseg.schedule import apply_plan, count_items, runtime_minutes, scaled_iterations


def boxes_file(tmp_path, images: int, boxes_per_image: int, crowd: int = 0):
    anns, k = [], 0
    for i in range(1, images + 1):
        for j in range(boxes_per_image + (crowd if i == 1 else 0)):
            k += 1
            anns.append({"id": k, "image_id": i, "category_id": 1, "bbox": [0, 0, 4, 4],
                         "area": 16, "iscrowd": int(j >= boxes_per_image)})  # fmt: skip
    images_ = [{"id": i, "file_name": f"{i}.jpg", "width": 8, "height": 8}
               for i in range(1, images + 2)]  # one image without boxes  # fmt: skip
    path = tmp_path / "train.boxes.json"
    path.write_text(json.dumps({"images": images_, "annotations": anns, "categories": []}))
    return path


def test_iterations_are_passes_over_the_data_within_bounds():
    assert scaled_iterations(1444, 11, passes=12, min_iters=800, max_iters=8000) == 1576
    assert scaled_iterations(187, 11, passes=12, min_iters=800, max_iters=8000) == 800
    assert scaled_iterations(20000, 11, passes=12, min_iters=800, max_iters=8000) == 8000


def test_counts_skip_crowd_regions_and_images_without_boxes(tmp_path):
    path = boxes_file(tmp_path, images=5, boxes_per_image=3, crowd=2)
    assert count_items(path, "boxes") == 15
    assert count_items(path, "images") == 5


def test_stage_2_trains_longer_on_more_boxes_its_lr_schedule_following(tmp_path):
    cfg = load_config("seg/boxcaseg_lite0_real_cpu.py")
    path = boxes_file(tmp_path, images=160, boxes_per_image=9)  # 1440 boxes, 11 a batch
    line = apply_plan(cfg, path, threads=2)
    assert cfg.train_cfg.max_iters == 1571 and cfg.param_scheduler[0].end == 1571
    assert "1440 training boxes, 11 an iteration, 12 passes -> 1571 iterations" in line
    assert "expected 22.2 min on 2 CPU thread(s)" in line  # 1571 x 1.2 s / sqrt(2)


def test_the_detectors_train_in_passes_over_images_at_least_their_minimum(tmp_path):
    cfg = load_config("det/maskrcnn_lite0_fpn_real_cpu.py")
    apply_plan(cfg, boxes_file(tmp_path, images=69, boxes_per_image=3))
    assert cfg.train_cfg.max_iters == 300  # 12 x 69 / 4 = 207: the minimum
    cfg = load_config("det/maskrcnn_lite0_fpn_real_cpu.py")
    apply_plan(cfg, boxes_file(tmp_path, images=1000, boxes_per_image=1))
    assert cfg.train_cfg.max_iters == 3000
    step = cfg.param_scheduler[1]
    assert step.end == 3000 and step.milestones == [2250]  # the step stays at 3/4


def test_an_explicit_iteration_count_replaces_the_data_scaled_schedule(tmp_path):
    cfg = load_config("seg/boxcaseg_lite0_real_cpu.py", {"train_cfg.max_iters": 50})
    assert cfg.schedule == {"cpu_seconds_per_iter": 1.2}  # its time per iteration stays
    path = boxes_file(tmp_path, images=160, boxes_per_image=9)
    assert apply_plan(cfg, path) is None
    assert cfg.train_cfg.max_iters == 50 and cfg.param_scheduler[0].end == 50
    # the runtime of the fixed count: 2 x 50 x 1.2 s / sqrt(2) + 10 min
    assert runtime_minutes(cfg, path, 2, fallback=720) == 12


def test_runtime_is_twice_the_expected_time_or_the_fallback_before_the_data_exists(tmp_path):
    path = boxes_file(tmp_path, images=160, boxes_per_image=9)
    cfg = load_config("seg/boxcaseg_lite0_real_cpu.py")
    assert runtime_minutes(cfg, tmp_path / "missing.json", 2, fallback=720) == 720
    minutes = runtime_minutes(cfg, path, 2, fallback=720)
    assert minutes == pytest.approx(2 * 22.2 + 10, abs=1)
    assert runtime_minutes(cfg, path, 2, fallback=720, attempt=2) > minutes
    # no per-iteration time stated (the from-scratch recipe): the fallback
    scratch = load_config("seg/boxcaseg_hr18s_real_cpu.py")
    assert runtime_minutes(scratch, path, 2, fallback=720) == 720


def test_boxinsts_pairwise_ramp_follows_the_data_scaled_schedule(tmp_path):
    """BoxInst's pairwise term ramps up over 1/9 of training (mmdet: 10k of 90k): 33 of 300
    iterations, 110 of 1000 when 1000 images make the schedule longer."""
    cfg = load_config("det/boxinst_lite0_fpn_real_cpu.py")
    assert cfg.model.mask_head.warmup_iters == 33
    apply_plan(cfg, boxes_file(tmp_path, images=1000, boxes_per_image=1))
    assert cfg.train_cfg.max_iters == 3000 and cfg.model.mask_head.warmup_iters == 330
