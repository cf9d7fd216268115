# Stages 3 and 4: a proxy mask inside every training box (salient head), then merge and drop.
# Split in two rules so that a change of the merge settings does not rerun inference.
# Beside them the baselines' masks: GrabCut inside every box, the box filled as mask.


# One rule for both ways of running Stage 3: with proxy.shards = 1 it writes proxy_raw.json
# itself; with n > 1 it is n jobs (wildcard `shard`), each writing its part, and
# gather_proxy_masks joins the parts into the same file, byte for byte.
SHARDED = PROXY_SHARDS > 1
PROXY_PART = out(f"proxy/shards/part{{shard}}-of-{PROXY_SHARDS}.json")


rule proxy_masks:
    input:
        # the model is built from the config stored in the checkpoint (overrides included)
        checkpoint=out("segmentation/final.pth"),
        boxes=out("data/train.boxes.json"),
    output:
        temp(PROXY_PART) if SHARDED else out("proxy/proxy_raw.json"),
    log:
        log_file("proxy_masks_{shard}" if SHARDED else "proxy_masks"),
    benchmark:
        bench_file("proxy_masks_{shard}" if SHARDED else "proxy_masks")
    wildcard_constraints:
        shard=r"\d+",
    priority: CRITICAL_PATH
    conda:
        "../envs/openmmlab.yaml"
    threads: cores_share(1)
    resources:
        mem_mb=10000,
        runtime=240,
        gpu=0,
    params:
        section=section("proxy", exclude=("shards",)),
        shard=(lambda wc: f"--shard {wc.shard} --shards {PROXY_SHARDS}") if SHARDED else "",
        launch=launch,
    shell:
        "{params.launch} proxy --section {params.section:q} --checkpoint {input.checkpoint} "
        "--boxes {input.boxes} {params.shard} --out {output} > {log} 2>&1"


if SHARDED:

    rule gather_proxy_masks:
        input:
            boxes=out("data/train.boxes.json"),
            parts=expand(PROXY_PART, shard=range(PROXY_SHARDS)),
        output:
            out("proxy/proxy_raw.json"),
        log:
            log_file("gather_proxy_masks"),
        priority: CRITICAL_PATH
        conda:
            "../envs/data.yaml"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            launch=launch,
        shell:
            "{params.launch} gather-proxy --boxes {input.boxes} --parts {input.parts} "
            "--out {output} > {log} 2>&1"


rule merge_drop:
    input:
        unpack(merge_inputs),
    output:
        masks=out("proxy/proxy_masks.json"),
        quality=out("proxy/quality.json"),
        overlays=report(
            out("proxy/overlays.png"), caption="../report/overlays.rst", category="3. Proxy masks"
        ),
        table=report(
            out("proxy/quality_table.png"),
            caption="../report/quality.rst",
            category="3. Proxy masks",
        ),
    log:
        log_file("merge_drop"),
    benchmark:
        bench_file("merge_drop")
    priority: CRITICAL_PATH
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        section=section("merge"),
        gt=lambda wc, input: f"--gt {input.gt}" if "gt" in input.keys() else "",
        launch=launch,
    shell:
        "{params.launch} merge --section {params.section:q} --raw {input.raw} {params.gt} "
        "--out {output.masks} --quality-out {output.quality} --overlays-out {output.overlays} "
        "--table-out {output.table} > {log} 2>&1"


rule box_masks:
    input:
        out("data/train.boxes.json"),
    output:
        out("data/train.boxmask.json"),
    log:
        log_file("box_masks"),
    benchmark:
        bench_file("box_masks")
    conda:
        "../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        launch=launch,
    shell:
        "{params.launch} box-masks --boxes {input} --out {output} > {log} 2>&1"


rule grabcut_masks:
    input:
        unpack(grabcut_inputs),
    output:
        masks=out("proxy/grabcut_masks.json"),
        quality=out("proxy/grabcut_quality.json"),
    log:
        log_file("grabcut_masks"),
    benchmark:
        bench_file("grabcut_masks")
    conda:
        "../envs/data.yaml"
    threads: cores_share(1)
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        section=section("grabcut"),
        gt=lambda wc, input: f"--gt {input.gt}" if "gt" in input.keys() else "",
        # merged as the proxy masks are (merge.resolve_overlaps)
        overlaps="" if config["merge"]["resolve_overlaps"] else "--keep-overlaps",
        launch=launch,
    shell:
        "{params.launch} grabcut --section {params.section:q} --boxes {input.boxes} {params.gt} "
        "--out {output.masks} --quality-out {output.quality} --threads {threads} "
        "{params.overlaps} > {log} 2>&1"


if SECOND_ROUND:

    # Stages 3 and 4 of round 1 (rules/segmentation.smk): their kept masks extend the salient
    # set of round 2, whose model makes the proxy masks above. One job, never sharded.
    use rule proxy_masks as proxy_masks_round1 with:
        input:
            checkpoint=out("segmentation/round1/final.pth"),
            boxes=out("data/train.boxes.json"),
        output:
            out("proxy/round1/proxy_raw.json"),
        log:
            log_file("proxy_masks_round1"),
        benchmark:
            bench_file("proxy_masks_round1")
        params:
            shard="",

    use rule merge_drop as merge_drop_round1 with:
        input:
            unpack(lambda wc: merge_inputs(wc, raw="proxy/round1/proxy_raw.json")),
        output:
            masks=out("proxy/round1/proxy_masks.json"),
            quality=out("proxy/round1/quality.json"),
            overlays=out("proxy/round1/overlays.png"),
            table=out("proxy/round1/quality_table.png"),
        log:
            log_file("merge_drop_round1"),
        benchmark:
            bench_file("merge_drop_round1")
