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
        # second_round: what the rounds train on (their inputs), not how
        section=section("segmentation", exclude=("second_round",)),
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


if SECOND_ROUND:

    # Round 1: the same training on Stage 1's salient set; its Stage 3 and 4 (proxy_masks_round1,
    # merge_drop_round1) are in rules/proxy.smk. train_segmentation is then round 2.
    use rule train_segmentation as train_segmentation_round1 with:
        input:
            unpack(round1_segmentation_inputs),
        output:
            checkpoint=out("segmentation/round1/final.pth"),
            metrics=out("segmentation/round1/miou_star.json"),
            curve=out("segmentation/round1/loss_curve.png"),
        log:
            log_file("train_segmentation_round1"),
        benchmark:
            bench_file("train_segmentation_round1")
        params:
            work_dir=out("segmentation/round1/work"),

    rule second_round_salient:
        input:
            salient=out("data/salient.json"),
            proxies=out("proxy/round1/proxy_masks.json"),
            boxes=out("data/train.boxes.json"),
        output:
            index=out("segmentation/round2_salient.json"),
            crops=directory(out("segmentation/round2_salient")),
        log:
            log_file("second_round_salient"),
        benchmark:
            bench_file("second_round_salient")
        priority: CRITICAL_PATH
        conda:
            "../envs/openmmlab.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            section=json.dumps(config["segmentation"]["second_round"], sort_keys=True),
            launch=launch,
        shell:
            "{params.launch} second-round-salient --section {params.section:q} "
            "--salient {input.salient} --proxies {input.proxies} --boxes {input.boxes} "
            "--crops-dir {output.crops} --out {output.index} > {log} 2>&1"
