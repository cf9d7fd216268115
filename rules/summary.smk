# The run's headline: mask AP of every variant, with the mask quality figures.


rule summary:
    input:
        metrics=expand(out("detection/{variant}/metrics.json"), variant=VARIANTS),
        seg=out("segmentation/miou_star.json"),
        quality=list(quality_files().values()),
        costs=[f for v in VARIANTS for f in variant_cost_files(v)],
    output:
        json=out("summary/results.json"),
        md=out("summary/results.md"),
        png=report(
            out("summary/ap_table.png"), caption="../report/ap_table.rst", category="5. Results"
        ),
        breakdown=report(
            out("summary/quality_breakdown.png"),
            caption="../report/quality_breakdown.rst",
            category="3. Proxy masks",
        ),
    log:
        log_file("summary"),
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        metrics=" ".join(f"{v}={out(f'detection/{v}/metrics.json')}" for v in VARIANTS),
        quality=" ".join(f"{name}={path}" for name, path in quality_files().items()),
        costs=" ".join(f"{v}={','.join(variant_cost_files(v))}" for v in VARIANTS),
        launch=launch,
    shell:
        "{params.launch} summarize --metrics {params.metrics} --seg-metrics {input.seg} "
        "--quality {params.quality} --costs {params.costs} --out-json {output.json} "
        "--out-md {output.md} --out-png {output.png} --out-breakdown-png {output.breakdown} "
        "> {log} 2>&1"
