# Phase 3: per-image robust normalization to [0,1], crop to a multiple of the scale.


rule normalize:
    input:
        index="results/extract/{dataset}/index.tsv",
        frames="results/extract/{dataset}/frames",
        code=get_code("scripts/normalize.py"),
    output:
        params="results/normalize/{dataset}/params.tsv",
        images=directory("results/normalize/{dataset}/images"),
    log:
        "logs/normalize/{dataset}.log",
    benchmark:
        "benchmarks/normalize/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        settings=lambda wildcards: get_dataset(wildcards)["normalize"],
        scale=config["scale"],
    script:
        "../scripts/normalize.py"
