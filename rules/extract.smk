# Phase 2: DICOM/FITS/PNG/JPEG/TIFF -> one float32 TIFF per frame in physical units + index.tsv.


rule extract:
    input:
        manifest="resources/raw/{dataset}/MANIFEST.tsv",
        code=get_code("scripts/extract.py"),
    output:
        index="results/extract/{dataset}/index.tsv",
        frames=directory("results/extract/{dataset}/frames"),
    log:
        "logs/extract/{dataset}.log",
    benchmark:
        "benchmarks/extract/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        modalities=lambda wildcards: get_dataset(wildcards)["modalities"],
        max_bytes=config["extract"]["max_image_bytes"],
    script:
        "../scripts/extract.py"
