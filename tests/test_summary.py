"""The run's summary table: AP beside each variant's training cost, from Snakemake's benchmark
files, and the equal-compute ratio of BoxInst against BoxCaseg's route."""

from __future__ import annotations

import json

import pytest

from boxcaseg.summary import job_cost, summarize

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def bench(path, wall: float, cpu: float) -> str:
    path.write_text(HEADER + f"{wall}\t0:00:00\t100\t200\t90\t95\t0\t0\t99\t{cpu}\n")
    return str(path)


def metrics(path, mask_ap: float, box_ap: float) -> str:
    path.write_text(json.dumps({"segm": {"AP": mask_ap}, "bbox": {"AP": box_ap}}))
    return str(path)


def test_job_cost_sums_wall_and_cpu_seconds(tmp_path):
    files = [bench(tmp_path / "a.tsv", 10.5, 20.0), bench(tmp_path / "b.tsv", 4.5, 3.0)]
    assert job_cost(files) == {"wall_s": 15.0, "cpu_s": 23.0}


def test_summary_puts_each_variants_cost_beside_its_ap_and_the_equal_compute_ratio(tmp_path):
    costs = {
        "weak": [
            bench(tmp_path / "seg.tsv", 300, 580),  # Stage 2 on two threads
            bench(tmp_path / "proxy.tsv", 20, 20),
            bench(tmp_path / "merge.tsv", 5, 5),
            bench(tmp_path / "det_weak.tsv", 175, 175),
        ],
        "boxinst": [bench(tmp_path / "det_boxinst.tsv", 160, 195)],
        "boxinst_equal": [bench(tmp_path / "det_boxinst_equal.tsv", 560, 700)],
    }
    result = summarize(
        variant_metrics={
            v: metrics(tmp_path / f"{v}.json", ap, 50.0)
            for v, ap in (("weak", 40.0), ("boxinst", 20.0), ("boxinst_equal", 30.0))
        },
        seg_metrics=None,
        quality_files={},
        out_json=str(tmp_path / "results.json"),
        out_md=str(tmp_path / "results.md"),
        out_png=str(tmp_path / "table.png"),
        variant_costs=costs,
    )
    rows = {row["model"]: row for row in result["ap"]}
    assert rows["BoxCaseg (proxy masks)"]["train wall s"] == 500
    assert rows["BoxCaseg (proxy masks)"]["train CPU s"] == 780
    assert rows["BoxInst at BoxCaseg's compute"]["train CPU s"] == 700
    text = (tmp_path / "results.md").read_text()
    assert "| train wall s | train CPU s |" in text
    assert "boxinst_equal_ratio = 4.00" in text  # 780 / 195 CPU seconds
    assert "BoxInst at equal compute took 560 s wall / 700 s CPU" in text


def test_a_benchmark_file_with_another_layout_is_refused(tmp_path):
    (tmp_path / "bad.tsv").write_text("s\tcpu_time\n1.0\n")
    with pytest.raises(ValueError):
        job_cost([str(tmp_path / "bad.tsv")])
