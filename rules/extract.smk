# Phase 2: DICOM/FITS/PNG/JPEG/TIFF -> one float32 TIFF per frame in physical units + index.tsv.
# Work units (compute.data_units) each decode their share of the manifest's files into candidate frames and a
# unit table (scisr.extract); the gather settles duplicates across units and writes the index (scisr.extract_gather).
# Ids are pseudonyms keyed by the study's secret; the key maps that trace them back stay outside results/
# (config deid).


rule extract_unit:
    input:
        manifest="resources/raw/{dataset}/MANIFEST.tsv",
        code=get_code("scripts/extract_unit.py"),
    output:
        table="results/extract/{dataset}/units/{unit}/candidates.tsv",
        frames=directory("results/extract/{dataset}/units/{unit}/frames"),
        key_map=f"{config['deid']['key_map_dir']}/{{dataset}}.units/{{unit}}.tsv",
    log:
        "logs/extract/{dataset}.{unit}.log",
    benchmark:
        "benchmarks/extract/{dataset}.{unit}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        unit=lambda wildcards: int(wildcards.unit),
        units=DATA_UNITS,
        modalities=lambda wildcards: get_dataset(wildcards)["modalities"],
        max_bytes=config["extract"]["max_image_bytes"],
        reader_memory_mb=config["extract"]["reader_memory_mb"],
        reader_timeout_s=config["extract"]["reader_timeout_s"],
        frames=lambda wildcards: get_dataset(wildcards)["frames"],
        secret=config["deid"]["secret"],
    script:
        "../scripts/extract_unit.py"


rule extract:
    input:
        tables=data_units("results/extract/{dataset}/units/{unit}/candidates.tsv"),
        frames=data_units("results/extract/{dataset}/units/{unit}/frames"),
        key_maps=data_units(
            f"{config['deid']['key_map_dir']}/{{dataset}}.units/{{unit}}.tsv"
        ),
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
    script:
        "../scripts/extract.py"
