# The budget crossover: every snapshot of a model's one training run (study.budgets, saved by the
# train rule) run and scored on a domain's test set in one job per model and domain, through the infer
# and score phases' own library functions (the predictions are temporary).


rule score_budget:
    input:
        generators=get_budget_snapshots(),
        card="results/models/{trained}/model.yaml",
        test="results/split/{dataset}/test",
        code=get_code("scripts/score_budget.py"),
    output:
        scores=expand(
            "results/budget/score/{{trained}}/{iterations}/{{dataset}}.tsv",
            iterations=BUDGETS,
        ),
    log:
        "logs/budget/{trained}/{dataset}.log",
    benchmark:
        "benchmarks/budget/{trained}/{dataset}.tsv"
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
        border=config["scale"],
    script:
        "../scripts/score_budget.py"
