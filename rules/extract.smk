# Phase 2: DICOM/FITS/PNG/JPEG/TIFF -> one float32 TIFF per frame in physical units + index.tsv.
# Ids are pseudonyms keyed by the study's secret; the key map that traces them back stays
# outside results/ (config deid).


rule extract:
    input:
        manifest="resources/raw/{dataset}/MANIFEST.tsv",
        code=get_code("scripts/extract.py"),
    output:
        index="results/extract/{dataset}/index.tsv",
        frames=directory("results/extract/{dataset}/frames"),
        key_map=f"{config['deid']['key_map_dir']}/{{dataset}}.tsv",
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
        reader_memory_mb=config["extract"]["reader_memory_mb"],
        reader_timeout_s=config["extract"]["reader_timeout_s"],
        frames=lambda wildcards: get_dataset(wildcards)["frames"],
        secret=config["deid"]["secret"],
    script:
        "../scripts/extract.py"
