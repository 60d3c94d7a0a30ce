# Phase 4: subject-level train/val/test split, HR and LR pairs as 16-bit PNG.


rule split:
    input:
        index="results/extract/{dataset}/index.tsv",
        images="results/normalize/{dataset}/images",
        code=get_code(
            "prepare/split.py",
            "prepare/degrade.py",
            "prepare/resize.py",
            "prepare/normalize.py",
            "checks.py",
            "io/files.py",
        ),
    output:
        table="results/split/{dataset}/split.tsv",
        train=directory("results/split/{dataset}/train"),
        val=directory("results/split/{dataset}/val"),
        test=directory("results/split/{dataset}/test"),
    log:
        "logs/split/{dataset}.log",
    benchmark:
        "benchmarks/split/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        settings=lambda wildcards: get_dataset(wildcards)["split"],
        scale=config["scale"],
        seed=config["seed"],
    script:
        "../scripts/split.py"
