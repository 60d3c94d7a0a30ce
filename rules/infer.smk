# Phase 6: every model (and bicubic) on every evaluated dataset's test set, one job per test fold (the model
# instance that never saw that fold: scisr.folds).


rule infer:
    input:
        unpack(get_model_files),
        test="results/split/{dataset}/fold{fold}/test",
        code=get_code("scripts/infer.py"),
    output:
        predictions=directory("results/infer/{model}/{dataset}/fold{fold}"),
    log:
        "logs/infer/{model}/{dataset}/fold{fold}.log",
    benchmark:
        "benchmarks/infer/{model}/{dataset}/fold{fold}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["compute"]["infer_threads"]
    resources:
        mem_mb=config["compute"]["mem_mb"],
        gpu=config["compute"]["gpus"],
    params:
        scale=config["scale"],
        tile=config["infer"]["tile"],
        overlap=config["infer"]["overlap"],
        device=config["compute"]["device"],
    script:
        "../scripts/infer.py"
