# Phase 5, imported models: published weights converted into a model folder (generator.pt and
# model.yaml with source: imported), never trained. A packaged model (realesrgan-x4plus) is read
# from its installed package; weight files named in the config are inputs.


rule import_weights:
    input:
        weights=get_import_files,
        code=get_code("scripts/import_weights.py"),
    output:
        generator="results/models/{imported}/generator.pt",
        card="results/models/{imported}/model.yaml",
    log:
        "logs/import/{imported}.log",
    benchmark:
        "benchmarks/import/{imported}.tsv"
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        source=get_import_source,
        licence=get_import_licence,
    script:
        "../scripts/import_weights.py"
