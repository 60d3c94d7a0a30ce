# Phase 7: per-image RMSE, PSNR, SSIM on float [0,1] data, border of `scale` cropped.


rule score:
    input:
        predictions="results/infer/{model}/{dataset}",
        test="results/split/{dataset}/test",
        code=get_code(
            "metrics.py",
            "io/files.py",
            "prepare/split.py",
            "prepare/degrade.py",
            "prepare/resize.py",
            "prepare/normalize.py",
            "checks.py",
        ),
    output:
        scores="results/score/{model}/{dataset}.tsv",
    log:
        "logs/score/{model}/{dataset}.log",
    benchmark:
        "benchmarks/score/{model}/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        border=config["scale"],
    script:
        "../scripts/score.py"
