# Stage 1: the demo dataset (when data.source is demo) and the import/validation of a dataset
# into box-only training files, evaluation-only ground truth and a salient index.


rule demo_dataset:
    output:
        directory(DEMO_DIR),
    params:
        section=section("demo"),
        launch=launch("demo_dataset"),
    log:
        log_file("demo_dataset"),
    benchmark:
        bench_file("demo_dataset")
    shell:
        "{params.launch} demo-data --section {params.section:q} --out-dir {output} > {log} 2>&1"


def prepare_inputs(wildcards):
    if config["data"]["source"] == "demo":
        return [DEMO_DIR]
    files = [s["annotations"] for s in config["data"]["splits"].values() if "annotations" in s]
    return files


def prepare_outputs():
    files = {"train": out("data/train.boxes.json"), "salient": out("data/salient.json"),
             "summary": out("data/summary.json")}
    if HAS_VAL:
        files.update(val_boxes=out("data/val.boxes.json"), val_gt=out("data/val.gt.json"))
    if "full" in VARIANTS:
        files["train_gt"] = out("data/train.gt.json")
    return files


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
        out_dir=out("data"),
        launch=launch("prepare_data"),
    log:
        log_file("prepare_data"),
    benchmark:
        bench_file("prepare_data")
    shell:
        "{params.launch} prepare --section {params.section:q} --out-dir {params.out_dir} "
        "{params.demo} {params.masks} --figure {output.figure} > {log} 2>&1"
