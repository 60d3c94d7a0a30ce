# Phase 6: every model (and bicubic) on every evaluated dataset's test set.


rule infer:
    input:
        model=get_model_files,
        test="results/split/{dataset}/test",
        code=get_code(
            "infer.py", "tiling.py", "models", "prepare/resize.py", "io/files.py"
        ),
    output:
        predictions=directory("results/infer/{model}/{dataset}"),
    log:
        "logs/infer/{model}/{dataset}.log",
    benchmark:
        "benchmarks/infer/{model}/{dataset}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["compute"]["infer_threads"]
    resources:
        mem_mb=config["compute"]["mem_mb"],
        gpu=config["compute"]["gpus"],
    params:
        model=lambda wildcards: (
            BASELINE
            if wildcards.model == BASELINE
            else f"results/models/{wildcards.model}"
        ),
        scale=config["scale"],
        tile=config["infer"]["tile"],
        overlap=config["infer"]["overlap"],
        device=config["compute"]["device"],
    script:
        "../scripts/infer.py"
