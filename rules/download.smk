# Phase 1: sources -> resources/raw/<dataset>/ + MANIFEST.tsv (path, bytes, sha256, source,
# subject, series, study, license). Network sources keep their downloads in
# resources/cache/<dataset>/, so a rerun after an interruption resumes instead of starting over.


localrules:
    download,


rule download:
    input:
        code=get_code("scripts/download.py"),
    output:
        manifest="resources/raw/{dataset}/MANIFEST.tsv",
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "benchmarks/download/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        source=get_source,
        cache="resources/cache/{dataset}",
    script:
        "../scripts/download.py"
