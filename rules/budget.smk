# The budget crossover: every snapshot of a model's one training run (study.budgets, saved by the
# train rule) run and scored on a domain's test set in one job per model and domain, through the infer
# and score phases' own library functions (the predictions are temporary); one job per test fold, with the
# snapshots of the model instance that never saw it.


rule score_budget:
    input:
        generators=get_budget_snapshots,
        card=get_budget_card,
        test="results/split/{dataset}/fold{fold}/test",
        code=get_code("scripts/score_budget.py"),
    output:
        scores=expand(
            "results/budget/score/{{trained}}/{iterations}/{{dataset}}/fold{{fold}}.tsv",
            iterations=BUDGETS,
        ),
    log:
        "logs/budget/{trained}/{dataset}/fold{fold}.log",
    benchmark:
        "benchmarks/budget/{trained}/{dataset}/fold{fold}.tsv"
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
