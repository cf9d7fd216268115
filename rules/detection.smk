# Stage 5: Mask R-CNN (mmdetection) trained per variant with the same config and budget:
# weak = BoxCaseg proxy masks (drop-aware mask loss), full = true masks, box = box as mask,
# grabcut = GrabCut masks from the boxes; and beside them mmdet's BoxInst on the same boxes.
# Then predictions on the val split, scored with pycocotools; optionally (predict.images) one
# detector over a folder of new photos.


rule train_detection:
    input:
        train=variant_train_file,
        model_config=variant_model_config,
    output:
        checkpoint=out("detection/{variant}/final.pth"),
        curve=report(
            out("detection/{variant}/loss_curve.png"),
            caption="../report/det_loss.rst",
            category="4. Mask R-CNN",
            subcategory="{variant}",
        ),
    log:
        log_file("train_detection_{variant}"),
    benchmark:
        bench_file("train_detection_{variant}")
    wildcard_constraints:
        variant="|".join(VARIANT_FILES),
    priority: variant_priority
    conda:
        "../envs/openmmlab.yaml"
    threads: cores_share(2)
    resources:
        mem_mb=12000,
        runtime=training_runtime(fallback=1440),
        gpu=0,
    params:
        section=detection_section,
        variant_options=variant_train_options,
        work_dir=lambda wc: out(f"detection/{wc.variant}/work"),
        launch=launch,
        launcher=launcher_flag,
    shell:
        "{params.launch} train-det --section {params.section:q} --config {input.model_config} "
        "--train {input.train} {params.variant_options} --work-dir {params.work_dir} "
        "--checkpoint-out {output.checkpoint} --curve-out {output.curve} --title {wildcards.variant} "
        "{params.launcher} > {log} 2>&1"


rule evaluate_detection:
    input:
        checkpoint=out("detection/{variant}/final.pth"),
        gt=out("data/val.gt.json"),
        model_config=variant_model_config,
    output:
        metrics=out("detection/{variant}/metrics.json"),
    log:
        log_file("evaluate_detection_{variant}"),
    benchmark:
        bench_file("evaluate_detection_{variant}")
    wildcard_constraints:
        variant="|".join(VARIANT_FILES),
    priority: variant_priority
    conda:
        "../envs/openmmlab.yaml"
    threads: cores_share(2)
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=0,
    params:
        section=detection_section,
        out_dir=lambda wc: out(f"detection/{wc.variant}/val"),
        launch=launch,
        launcher=launcher_flag,
    shell:
        "{params.launch} eval-det --section {params.section:q} --config {input.model_config} "
        "--checkpoint {input.checkpoint} --gt {input.gt} --out-dir {params.out_dir} "
        "--metrics-out {output.metrics} {params.launcher} > {log} 2>&1"


rule predict_images:
    input:
        checkpoint=out(f"detection/{PREDICT_VARIANT}/final.pth"),
        categories=out("data/train.boxes.json"),
        images=PREDICT_IMAGES,
    output:
        results=report(
            directory(out("predict")),
            patterns=["overlays/{name}"],
            caption="../report/predict.rst",
            category="5. New photos",
        ),
    log:
        log_file("predict_images"),
    conda:
        "../envs/openmmlab.yaml"
    threads: cores_share(1)
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=0,
    params:
        section=section("predict", exclude=("images",)),
        folder=config["predict"].get("images"),
        launch=launch,
    shell:
        "{params.launch} predict {params.folder:q} --section {params.section:q} "
        "--checkpoint {input.checkpoint} --categories {input.categories} "
        "--out-dir {output.results} > {log} 2>&1"
