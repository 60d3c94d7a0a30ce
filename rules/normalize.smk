# Phase 3: per-image robust normalization to [0,1], crop to a multiple of the scale. Work units
# (compute.data_units) each normalize their subjects' frames; the gather links them into the dataset's folder
# and writes params.tsv in index order (scisr.prepare.normalize).


rule normalize_unit:
    input:
        index="results/extract/{dataset}/index.tsv",
        frames="results/extract/{dataset}/frames",
        code=get_code("scripts/normalize_unit.py"),
    output:
        params="results/normalize/{dataset}/units/{unit}/params.tsv",
        images=directory("results/normalize/{dataset}/units/{unit}/images"),
    log:
        "logs/normalize/{dataset}.{unit}.log",
    benchmark:
        "benchmarks/normalize/{dataset}.{unit}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        unit=lambda wildcards: int(wildcards.unit),
        units=DATA_UNITS,
        settings=lambda wildcards: get_dataset(wildcards)["normalize"],
        scale=config["scale"],
    script:
        "../scripts/normalize_unit.py"


rule normalize:
    input:
        index="results/extract/{dataset}/index.tsv",
        params=data_units("results/normalize/{dataset}/units/{unit}/params.tsv"),
        images=data_units("results/normalize/{dataset}/units/{unit}/images"),
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
    script:
        "../scripts/normalize.py"
