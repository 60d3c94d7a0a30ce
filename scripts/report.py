"""Snakemake adapter, phase 8: summary table, figures and index.html."""

from scisr.logs import log_to
from scisr.report import build_report


def main(smk) -> None:
    p = smk.params
    with log_to(smk.log[0]):
        build_report(
            scores=p.scores,
            predictions=p.predictions,
            histories=p.histories,
            cards=p.cards,
            test_dirs=p.tests,
            split_tables=p.splits,
            html_path=smk.output.html,
            summary_path=smk.output.summary,
            stats_path=smk.output.stats,
            metrics_path=smk.output.metrics,
            heatmap_path=smk.output.heatmap,
            curves_path=smk.output.curves,
            panel_paths=p.panels,
            baseline=p.baseline,
            generic=p.generic,
            title=p.title,
            scale=p.scale,
            degradations=p.degradations,
            field_scores=p.field_scores,
            fields=p.fields,
            field_stats_path=smk.output.field_stats,
            budget_scores=p.budget_scores,
            budget_tables=p.budget_tables,
            budget_path=smk.output.budget,
            budget_paths=p.budget_figures,
            train_benchmarks=p.benchmarks["train"],
            infer_benchmarks=p.benchmarks["infer"],
            costs_path=smk.output.costs,
            infer_costs_path=smk.output.infer_costs,
            skipped=p.skipped,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
