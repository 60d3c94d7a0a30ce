# The budget crossover: each snapshot of a model's one training run (study.budgets, saved by the
# train rule) run and scored on a domain's test set, through the infer and score phases' own scripts.


rule infer_budget:
    input:
        generator="results/models/{trained}/budget/{iterations}.pt",
        card="results/models/{trained}/model.yaml",
        test="results/split/{dataset}/test",
        code=get_code("scripts/infer.py"),
    output:
        predictions=temp(
            directory("results/budget/infer/{trained}/{iterations}/{dataset}")
        ),
    log:
        "logs/budget/infer/{trained}/{iterations}/{dataset}.log",
    benchmark:
        "benchmarks/budget/infer/{trained}/{iterations}/{dataset}.tsv"
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


rule score_budget:
    input:
        predictions="results/budget/infer/{trained}/{iterations}/{dataset}",
        test="results/split/{dataset}/test",
        code=get_code("scripts/score.py"),
    output:
        scores="results/budget/score/{trained}/{iterations}/{dataset}.tsv",
    log:
        "logs/budget/score/{trained}/{iterations}/{dataset}.log",
    benchmark:
        "benchmarks/budget/score/{trained}/{iterations}/{dataset}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        border=config["scale"],
    script:
        "../scripts/score.py"
