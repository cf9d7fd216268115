# Stage 1: the demo dataset (when data.source is demo) and the import/validation of a dataset
# into box-only training files, evaluation-only ground truth and a salient index.


rule demo_dataset:
    output:
        directory(f"resources/{RUN}/demo"),
    log:
        log_file("demo_dataset"),
    benchmark:
        bench_file("demo_dataset")
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        section=section("demo"),
        launch=launch,
    shell:
        "{params.launch} demo-data --section {params.section:q} --out-dir {output} > {log} 2>&1"


rule derive_dataset:
    input:
        derive_inputs,
    output:
        directory(f"resources/{RUN}/derived"),
    log:
        log_file("derive_dataset"),
    benchmark:
        bench_file("derive_dataset")
    conda:
        "../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=5000,
        runtime=60,
    params:
        # data.categories: images of those classes stay in the box splits
        section=json.dumps(
            {
                **config["data"].get("derive", {}),
                "keep_categories": config["data"].get("categories") or [],
            },
            sort_keys=True,
        ),
        launch=launch,
    shell:
        "{params.launch} derive --section {params.section:q} --out-dir {output} > {log} 2>&1"


rule prepare_data:
    input:
        prepare_inputs,
    output:
        **prepare_outputs(),
        figure=report(
            out("data/dataset_summary.png"), caption="../report/dataset.rst", category="1. Data"
        ),
    log:
        log_file("prepare_data"),
    benchmark:
        bench_file("prepare_data")
    conda:
        "../envs/data.yaml"
    threads: 2
    resources:
        mem_mb=5000,
        runtime=60,
    params:
        section=section("data"),
        generated=f"--generated {GENERATED_DIR}" if GENERATED_DIR else "",
        masks="--require-train-masks" if "full" in VARIANTS else "",
        out_dir=lambda wc, output: os.path.dirname(output.train),
        launch=launch,
    shell:
        "{params.launch} prepare --section {params.section:q} --out-dir {params.out_dir} "
        "{params.generated} {params.masks} --figure {output.figure} > {log} 2>&1"
