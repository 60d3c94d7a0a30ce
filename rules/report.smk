# Phase 8: summary table, statistics (the declared plan), seaborn figures and a self-contained HTML page.
# Its inputs, per-dataset figures and settings come from rules/report_inputs.smk; the script hands the rule's
# named inputs and outputs to scisr.report.build_report as they are.


include: "report_inputs.smk"


rule report:
    input:
        **report_inputs(),
        code=get_code("scripts/report.py"),
    output:
        **report_dataset_figures(),
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
        stats=report(
            "results/report/stats.tsv",
            caption="../report/stats.rst",
            category="Report",
        ),
        folds=report(
            "results/report/folds.tsv",
            caption="../report/folds.rst",
            category="Report",
        ),
        forest=report(
            "results/report/forest.png",
            caption="../report/forest.rst",
            category="Figures",
        ),
        paired=report(
            "results/report/paired.png",
            caption="../report/paired.rst",
            category="Figures",
        ),
        metrics=report(
            "results/report/metrics.png",
            caption="../report/metrics.rst",
            category="Figures",
        ),
        heatmap=report(
            "results/report/heatmap.png",
            caption="../report/heatmap.rst",
            category="Figures",
        ),
        curves=report(
            "results/report/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Figures",
        ),
        field_stats=report(
            "results/report/field_stats.tsv",
            caption="../report/field_stats.rst",
            category="Report",
        ),
        budget=report(
            "results/report/budget.tsv",
            caption="../report/budget.rst",
            category="Report",
        ),
        costs=report(
            "results/report/costs.tsv",
            caption="../report/costs.rst",
            category="Report",
        ),
        infer_costs=report(
            "results/report/infer_costs.tsv",
            caption="../report/costs.rst",
            category="Report",
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
        settings=report_settings(),
    script:
        "../scripts/report.py"
