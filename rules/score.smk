# Phase 7: per-image RMSE, PSNR, SSIM on float [0,1] data, border of `scale` cropped; and, where a
# dataset sets `field`, the field's own metrics (MRI head mask; astronomy physical units and flux).


rule score:
    input:
        predictions="results/infer/{model}/{dataset}/fold{fold}",
        test="results/split/{dataset}/fold{fold}/test",
        code=get_code("scripts/score.py"),
    output:
        scores=report(
            "results/score/{model}/{dataset}/fold{fold}.tsv",
            caption="../report/score.rst",
            category="Score",
            subcategory="{dataset}",
        ),
    log:
        "logs/score/{model}/{dataset}/fold{fold}.log",
    benchmark:
        "benchmarks/score/{model}/{dataset}/fold{fold}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        border=config["scale"],
    script:
        "../scripts/score.py"


rule score_field:
    input:
        unpack(get_field_inputs),
        predictions="results/infer/{model}/{dataset}/fold{fold}",
        test="results/split/{dataset}/fold{fold}/test",
        code=get_code("scripts/score_field.py"),
    output:
        scores=report(
            "results/score/{model}/{dataset}/fold{fold}.field.tsv",
            caption="../report/score_field.rst",
            category="Score",
            subcategory="{dataset} field metrics",
        ),
    log:
        "logs/score/{model}/{dataset}/fold{fold}.field.log",
    benchmark:
        "benchmarks/score/{model}/{dataset}/fold{fold}.field.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        border=config["scale"],
        field=get_field,
    script:
        "../scripts/score_field.py"
