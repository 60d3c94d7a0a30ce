# Phase 8: summary table, seaborn figures and a self-contained HTML page.


rule report:
    input:
        **get_report_inputs(),
        code=get_code("scripts/report.py"),
    output:
        html=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
        summary=report(
            "results/report/summary.tsv",
            caption="../report/summary.rst",
            category="Report",
        ),
        metrics=report(
            "results/report/metrics.png",
            caption="../report/metrics.rst",
            category="Figures",
        ),
        curves=report(
            "results/report/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Figures",
        ),
        panels=report(
            expand("results/report/panel_{dataset}.png", dataset=EVALUATE),
            caption="../report/panel.rst",
            category="Figures",
        ),
    log:
        "logs/report/report.log",
    benchmark:
        "benchmarks/report/report.tsv"
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=config["compute"]["mem_mb"],
    params:
        models=ALL_MODELS,
        trained=MODELS,
        datasets=EVALUATE,
        baseline=BASELINE,
        generic=GENERIC,
        scale=config["scale"],
        title=config["report"]["title"],
    script:
        "../scripts/report.py"
