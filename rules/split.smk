# Phase 4: subject-level split, HR and LR pairs as 16-bit PNG. A single holdout writes fold1/{train,val,test};
# under study.folds k > 1 every cross-validated dataset writes fold1..k, each fold testing its own subject
# groups (scisr.prepare.split). The generic model's photographs always keep a single holdout.
# Three steps: the plan assigns every piece (split.tsv); each work unit (compute.data_units) degrades its subject
# groups' pairs and writes them into a training store (scisr.prepare.store); the gather links every pair into its
# folds' parts and joins the stores.


rule split_plan:
    input:
        index="results/extract/{dataset}/index.tsv",
        params="results/normalize/{dataset}/params.tsv",
        images="results/normalize/{dataset}/images",
        code=get_code("scripts/split_plan.py"),
    output:
        table="results/split/{dataset}/split.tsv",
    log:
        "logs/split/{dataset}.plan.log",
    benchmark:
        "benchmarks/split/{dataset}.plan.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        folds=lambda wildcards: dataset_folds(wildcards.dataset),
        settings=lambda wildcards: get_dataset(wildcards)["split"],
        scale=config["scale"],
        seed=config["seed"],
    script:
        "../scripts/split_plan.py"


rule split_unit:
    input:
        table="results/split/{dataset}/split.tsv",
        images="results/normalize/{dataset}/images",
        code=get_code("scripts/split_unit.py"),
    output:
        pairs=directory("results/split/{dataset}/units/{unit}/pairs"),
        store=directory("results/split/{dataset}/units/{unit}/store"),
    log:
        "logs/split/{dataset}.{unit}.log",
    benchmark:
        "benchmarks/split/{dataset}.{unit}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        unit=lambda wildcards: int(wildcards.unit),
        units=DATA_UNITS,
        settings=lambda wildcards: get_dataset(wildcards)["split"],
        scale=config["scale"],
        seed=config["seed"],
    script:
        "../scripts/split_unit.py"


rule split:
    input:
        table="results/split/{dataset}/split.tsv",
        pairs=data_units("results/split/{dataset}/units/{unit}/pairs"),
        stores=data_units("results/split/{dataset}/units/{unit}/store"),
        code=get_code("scripts/split.py"),
    output:
        parts=split_outputs(1),
        store=directory("results/split/{dataset}/store"),
    log:
        "logs/split/{dataset}.log",
    benchmark:
        "benchmarks/split/{dataset}.tsv"
    wildcard_constraints:
        dataset=_alternatives([d for d in DATASETS if dataset_folds(d) == 1]),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        parts=get_split_parts,
    script:
        "../scripts/split.py"


rule split_folds:
    input:
        table="results/split/{dataset}/split.tsv",
        pairs=data_units("results/split/{dataset}/units/{unit}/pairs"),
        stores=data_units("results/split/{dataset}/units/{unit}/store"),
        code=get_code("scripts/split.py"),
    output:
        parts=split_outputs(FOLDS),
        store=directory("results/split/{dataset}/store"),
    log:
        "logs/split/{dataset}.log",
    benchmark:
        "benchmarks/split/{dataset}.tsv"
    wildcard_constraints:
        dataset=_alternatives([d for d in DATASETS if dataset_folds(d) > 1]),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        parts=get_split_parts,
    script:
        "../scripts/split.py"
