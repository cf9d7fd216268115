# Stage 1: the demo dataset (when data.source is demo) and the import/validation of a dataset
# into box-only training files, evaluation-only ground truth and a salient index.


rule demo_dataset:
    output:
        directory(DEMO_DIR),
    params:
        section=section("demo"),
        launch=launch("demo_dataset"),
    conda:
        "../envs/data.yaml"
    log:
        log_file("demo_dataset"),
    benchmark:
        bench_file("demo_dataset")
    shell:
        "{params.launch} demo-data --section {params.section:q} --out-dir {output} > {log} 2>&1"


rule prepare_data:
    input:
        prepare_inputs,
    output:
        **prepare_outputs(),
        figure=report(out("data/dataset_summary.png"), caption="../report/dataset.rst",
                      category="1. Data"),
    params:
        section=section("data"),
        demo=f"--demo-dir {DEMO_DIR}" if config["data"]["source"] == "demo" else "",
        masks="--require-train-masks" if "full" in VARIANTS else "",
        out_dir=lambda wc, output: os.path.dirname(output.train),
        launch=launch("prepare_data"),
    conda:
        "../envs/data.yaml"
    log:
        log_file("prepare_data"),
    benchmark:
        bench_file("prepare_data")
    shell:
        "{params.launch} prepare --section {params.section:q} --out-dir {params.out_dir} "
        "{params.demo} {params.masks} --figure {output.figure} > {log} 2>&1"
