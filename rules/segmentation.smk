# Stage 2: the class-agnostic segmentation model (mmsegmentation), trained jointly on box
# crops and salient images. Killed midway, a rerun resumes from the last checkpoint in the
# work dir; a changed config archives the old work dir instead of resuming from it.


rule train_segmentation:
    input:
        unpack(segmentation_inputs),
    output:
        checkpoint=out("segmentation/final.pth"),
        metrics=out("segmentation/miou_star.json"),
        curve=report(
            out("segmentation/loss_curve.png"),
            caption="../report/seg_loss.rst",
            category="2. Segmentation model",
        ),
    log:
        log_file("train_segmentation"),
    benchmark:
        bench_file("train_segmentation")
    priority: CRITICAL_PATH
    conda:
        "../envs/openmmlab.yaml"
    threads: cores_share(1)
    resources:
        mem_mb=8000,
        runtime=training_runtime(fallback=720),
        gpu=0,
    params:
        section=section("segmentation"),
        val=lambda wc, input: f"--val {input.val}" if "val" in input.keys() else "",
        work_dir=out("segmentation/work"),
        launch=launch,
        launcher=launcher_flag,
    shell:
        "{params.launch} train-seg --section {params.section:q} --config {input.model_config} "
        "--train {input.train} --salient {input.salient} {params.val} "
        "--work-dir {params.work_dir} --checkpoint-out {output.checkpoint} "
        "--metrics-out {output.metrics} --curve-out {output.curve} {params.launcher} "
        "> {log} 2>&1"
