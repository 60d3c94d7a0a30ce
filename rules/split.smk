# Phase 4: subject-level split, HR and LR pairs as 16-bit PNG. A single holdout writes fold1/{train,val,test};
# under study.folds k > 1 every cross-validated dataset writes fold1..k, each fold testing its own subject
# groups (scisr.prepare.split). The generic model's photographs always keep a single holdout. Every pair is also
# written once into the dataset's training store (scisr.prepare.store), which training reads a patch at a time.


rule split:
    input:
        index="results/extract/{dataset}/index.tsv",
        images="results/normalize/{dataset}/images",
        code=get_code("scripts/split.py"),
    output:
        table="results/split/{dataset}/split.tsv",
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
        settings=lambda wildcards: get_dataset(wildcards)["split"],
        parts=get_split_parts,
        scale=config["scale"],
        seed=config["seed"],
    script:
        "../scripts/split.py"


rule split_folds:
    input:
        index="results/extract/{dataset}/index.tsv",
        images="results/normalize/{dataset}/images",
        code=get_code("scripts/split.py"),
    output:
        table="results/split/{dataset}/split.tsv",
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
        settings=lambda wildcards: get_dataset(wildcards)["split"],
        parts=get_split_parts,
        scale=config["scale"],
        seed=config["seed"],
    script:
        "../scripts/split.py"
