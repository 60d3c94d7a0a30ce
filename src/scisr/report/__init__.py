"""The study's report: summary.tsv, stats.tsv under the declared plan, figures and a self-contained index.html.

`build_report` (scisr.report.build) writes it from the files the workflow names; the parts live in their own
modules: tables (scores, summary), stats (paired comparisons, the plan's families), text (prose), panels, figures,
answer_figures (forest, per subject, budget), sections and html (the page), budget (the crossover), costs, field
(field metrics), meaning (answers in words).
"""

from scisr.report.build import build_report

__all__ = ["build_report"]
