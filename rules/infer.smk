# Phase 6: every model (and bicubic) on every evaluated dataset's test set.


rule infer:
    input:
        unpack(get_model_files),
        test="results/split/{dataset}/test",
        code=get_code("scripts/infer.py"),
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
        scale=config["scale"],
        tile=config["infer"]["tile"],
        overlap=config["infer"]["overlap"],
        device=config["compute"]["device"],
    script:
        "../scripts/infer.py"
