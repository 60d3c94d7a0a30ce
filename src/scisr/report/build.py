"""The study's report: summary.tsv, stats.tsv under the declared plan, seaborn figures and a self-contained
index.html, from the files the workflow's report rule names (`build_report`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from scisr.io.files import atomic_path, write_text_atomic
from scisr.report import (
    answer_figures,
    budget,
    costs,
    field,
    figures,
    html,
    meaning,
    panels,
    sections,
    stats,
    tables,
    text,
)

PathLike = str | os.PathLike
HISTORY_COLUMNS = ("iteration", "stage", "val_rmse", "val_psnr")


def _read_histories(histories: Mapping[str, Mapping[int, PathLike] | PathLike]) -> dict[str, dict[int, pd.DataFrame]]:
    """Read history.tsv files ({model: {fold: path}}), checking the columns the learning curves need."""
    out = {}
    for model, tree in histories.items():
        out[model] = {}
        for fold, path in tables.by_fold(tree).items():
            frame = pd.read_csv(path, sep="\t")
            missing = set(HISTORY_COLUMNS) - set(frame.columns)
            if missing:
                raise ValueError(f"{path}: missing column(s) {sorted(missing)} needed for the learning curves")
            out[model][fold] = frame
    return out


def _write_table(frame: pd.DataFrame, path: PathLike | None) -> None:
    """Write a TSV atomically (NaN written as NaN); nothing when the rule names no path."""
    if path is not None:
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, sep="\t", index=False, na_rep="NaN")


def _per_subject(
    long: pd.DataFrame, subjects: pd.DataFrame | None, primary: pd.DataFrame, metric: str, generic: str
) -> pd.DataFrame:
    """Each subject's mean `metric` under the generic model and each primary comparison's model, per dataset."""
    frames = []
    for dataset, rows in primary.groupby("dataset", sort=False):
        for model in [generic, *rows["model"]]:
            sel = long[(long["dataset"] == dataset) & (long["model"] == model)]
            sel = sel[pd.notna(sel[metric]) & (sel[metric].abs() != float("inf"))]
            if sel.empty:
                continue
            subject, _ = stats.subject_lookup(subjects, dataset, sel["image_id"])
            means = sel[metric].groupby(subject.to_numpy()).mean()
            frames.append(
                pd.DataFrame({"dataset": dataset, "subject_id": means.index, "model": model, "value": means.to_numpy()})
            )
    if not frames:
        return pd.DataFrame(columns=["dataset", "subject_id", "model", "value"])
    return pd.concat(frames, ignore_index=True)


def _budget_part(
    inputs: Mapping,
    outputs: Mapping[str, PathLike],
    long: pd.DataFrame,
    subjects,
    *,
    generic: str,
    palette,
    models: list[str],
    metric: str,
) -> tuple[str, list[str]]:
    """Budget points and crossover statements: budget.tsv, one figure per domain, the section's HTML."""
    budget_scores = inputs.get("budget_scores") or {}
    points, diffs = budget.budget_points(
        budget_scores, inputs.get("budget_tables") or {}, inputs.get("cards") or {}, long, subjects
    )
    cost_columns = ["iteration", "cumulative_seconds", "device_hours", "device_hours_unit"]
    _write_table(
        points.merge(
            diffs.drop(columns=cost_columns).rename(
                columns={
                    "mean_diff": "diff_vs_reference",
                    "ci_low": "diff_ci_low",
                    "ci_high": "diff_ci_high",
                    "n_subjects": "diff_subjects",
                }
            ),
            on=["dataset", "model", "budget", "metric"],
            how="left",
        ),
        outputs.get("budget"),
    )
    statements, shown = [], []
    for dataset, by_model in budget_scores.items():
        own = [m for m in by_model if m != generic]
        lines = [budget.crossover_statement(dataset, m, generic, diffs, points, metric) for m in own]
        statements += lines
        path = outputs.get(f"budget_{dataset}")
        if path is None:
            continue
        answer_figures.budget_figure(
            diffs,
            path,
            dataset=dataset,
            models=[m for m in models if m in own],
            palette=palette,
            statement=" ".join(lines),
            metric=metric,
        )
        shown.append(
            (
                f"Budget: {dataset}",
                f"{dataset} test set: the paired difference of {text.metric_name(metric)} "
                f"between each domain model and the {generic} model at the same training budget (mean over "
                "subjects, 95% bootstrap CI over subjects), against training iterations (left) and the domain "
                "model's cumulative training cost (right), both on log scales; the last point of each line is "
                "the final model. Zero: as good as the generic model.",
                Path(path).read_bytes(),
            )
        )
    return sections.budget_section(statements, shown, text.budget_note(metric)), statements


def _with_crossover(advice: list[meaning.Advice], statements: list[str]) -> list[meaning.Advice]:
    """Add each domain's crossover statement to its caveats (the budget the answer holds at)."""
    for item in advice:
        item.caveats += [f"Budget crossover: {s}" for s in statements if s.startswith(f"{item.dataset}: ")]
    return advice


def nested(inputs: Mapping) -> dict:
    """The report's inputs nested by the parts of their names: "scores/mri/mri/1" becomes [scores][mri][mri][1].

    The report rule names each input kind/model/dataset/fold (rules/report_inputs.smk); a name of one part keeps
    its value as it is (an already nested mapping). Parts that are numbers (folds, budgets) become ints.
    """
    out: dict = {}
    for name, value in inputs.items():
        *parents, leaf = (int(part) if part.isdigit() else part for part in str(name).split("/"))
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _first_instances(cards: Mapping[str, Mapping[int, PathLike] | PathLike]) -> dict[str, PathLike]:
    """One card per model (its first instance), for the per-model facts every instance shares."""
    return {model: tables.by_fold(tree)[min(tables.by_fold(tree))] for model, tree in cards.items()}


def build_report(inputs: Mapping, outputs: Mapping[str, PathLike], settings: Mapping) -> None:
    """Write the report's tables, figures and index.html to `outputs` from the files in `inputs`.

    `inputs` (nested by model, dataset and test fold, or named by those parts as the report rule's inputs are:
      "scores/<model>/<dataset>/<fold>", see `nested`; a leaf may also be a single path, meaning fold 1):
      scores {model: {dataset: {fold: score TSV}}} (required), predictions {model: {dataset: {fold: folder}}},
      histories {model: {fold: history.tsv}} (trained models), cards {model: {fold: model.yaml}} (every model;
      one entry for an imported one), tests {dataset: {fold: test part}}, splits {dataset: split.tsv} (image ->
      subject; absent: each image its own subject), field_scores {dataset: {model: {fold: TSV}}},
      budget_scores {dataset: {model (generic first): {budget: {fold: TSV}}}}, budget_tables {model: {fold:
      budgets.tsv}}, train_benchmarks {model: {fold: TSV}}, infer_benchmarks {model: {dataset: {fold: TSV}}}.
    `outputs`: html, summary, stats (required); folds, forest, paired, metrics, heatmap, curves, field_stats,
      budget, costs, infer_costs, panel_<dataset>, budget_<dataset>: a part whose output is not named is left out.
    `settings`: baseline, generic, title, scale (required); imported (names), folds {dataset: k}, primary_metric
      (default rmse), degradations {dataset: name}, fields {dataset: mri|astronomy}, skipped {model: why},
      conventions (text).
    """
    inputs = nested(inputs)
    baseline, generic = settings["baseline"], settings["generic"]
    metric = settings.get("primary_metric") or "rmse"
    folds = dict(settings.get("folds") or {})
    cards = inputs.get("cards") or {}
    long = tables.read_scores(inputs["scores"])
    summary = tables.summarize(long, baseline=baseline, generic=generic)
    _write_table(summary, outputs["summary"])

    histories = _read_histories(inputs.get("histories") or {})
    models = tables.model_order(long["model"].tolist() + list(histories), baseline=baseline, generic=generic)
    datasets = tables.dataset_order(long["dataset"].tolist(), generic=generic)
    palette = figures.model_palette(models, baseline=baseline)
    scored = [m for m in models if m in set(long["model"])]
    splits = inputs.get("splits")
    subjects = stats.subjects_from_split(splits, folds or None) if splits else None
    imported = list(settings.get("imported") or [])
    table = stats.paired_stats(
        long,
        subjects,
        baseline=baseline,
        generic=generic,
        models=scored,
        datasets=datasets,
        primary_metric=metric,
        imported=imported,
    )
    _write_table(table, outputs["stats"])
    primary = table[table["family"] == stats.PRIMARY] if not table.empty else table
    fold_table = (
        stats.fold_differences(long, subjects, table) if not table.empty else pd.DataFrame(columns=stats.FOLD_COLUMNS)
    )
    _write_table(fold_table, outputs.get("folds"))

    train_cost = costs.training_costs(cards, inputs.get("train_benchmarks")) if inputs.get("train_benchmarks") else None
    answer_shown = []
    if outputs.get("forest"):
        answer_figures.forest_figure(primary, outputs["forest"], metric=metric, palette=palette, datasets=datasets)
        answer_shown.append(
            (
                "Primary comparisons",
                f"Each primary comparison: mean over subjects of the per-subject "
                f"difference in {text.metric_name(metric)} (model \u2212 {generic}) with its 95% "
                "bootstrap CI over subjects; right: the verdict (Holm over the primary family) and "
                "the subjects on which the model was better.",
                Path(outputs["forest"]),
            )
        )
    if outputs.get("paired"):
        answer_figures.paired_subjects_figure(
            _per_subject(long, subjects, primary, metric, generic),
            outputs["paired"],
            metric=metric,
            reference=generic,
            palette=palette,
            datasets=datasets,
        )
        answer_shown.append(
            (
                "Per subject",
                f"Each line is one test subject: its mean {text.metric_name(metric)} "
                f"under the {generic} model and under each model of the primary comparisons, so "
                "every pairing the statistics use is visible.",
                Path(outputs["paired"]),
            )
        )
    answer = sections.answer_section(
        primary,
        datasets,
        metric=metric,
        costs=train_cost,
        imported=imported,
        figures=[(h, c, p.read_bytes()) for h, c, p in answer_shown],
    )
    counts = {d: int(rows["n_subjects"].max()) for d, rows in primary.groupby("dataset", sort=False)}
    family = int(primary["family_size"].iloc[0]) if not primary.empty else 1
    plan = sections.plan_section(
        text.plan_items(table, folds=folds, primary_metric=metric, generic=generic, baseline=baseline)
        if not table.empty
        else [],
        text.cannot_show(folds, counts, needed=stats.subjects_needed(family)),
    )

    figure_list: list[tuple[str, str, Path]] = []
    if outputs.get("metrics"):
        figures.metrics_figure(long, Path(outputs["metrics"]), models=scored, datasets=datasets, palette=palette)
        figure_list.append(
            (
                "Scores per model and dataset",
                "Each dot is one test image; diamonds with bars are the "
                "mean \u00b1 sd. Images with infinite PSNR are not drawn in the PSNR panel.",
                Path(outputs["metrics"]),
            )
        )
    if outputs.get("heatmap"):
        figures.heatmap_figure(table, Path(outputs["heatmap"]), models=scored, datasets=datasets, baseline=baseline)
        figure_list.append(
            (
                "Cross-domain matrix",
                f"Every model on every test set: mean over subjects of the "
                f"per-image difference to {baseline} (left PSNR in dB, right RMSE). Blue cells improve on "
                f"{baseline}, red cells are worse, in both panels. Marks from stats.tsv (secondary "
                "comparisons, Holm within each dataset and metric): * significant, ns not significant, "
                "? too few subjects to tell. How specific is \u201cspecific\u201d: read a model's row "
                "across the datasets.",
                Path(outputs["heatmap"]),
            )
        )
    if outputs.get("curves"):
        figures.learning_curves_figure(
            histories, Path(outputs["curves"]), models=[m for m in models if m in histories], palette=palette
        )
        figure_list.append(
            (
                "Learning curves",
                "Validation RMSE (the study's curve) and PSNR against training "
                "iteration for each trained model (one line per fold's run under cross-validation), each "
                "on its own dataset's validation split (so levels differ between models); a dotted line "
                "marks where the GAN stage starts.",
                Path(outputs["curves"]),
            )
        )
    predictions = inputs.get("predictions") or {}
    tests = inputs.get("tests") or {}
    for dataset in datasets:
        path = outputs.get(f"panel_{dataset}")
        if path is None or dataset not in tests:
            continue
        shown = {
            model: tables.by_fold(by_dataset[dataset])
            for model, by_dataset in predictions.items()
            if dataset in by_dataset
        }
        caption = panels.build_panel(
            dataset, tables.by_fold(tests[dataset]), shown, long, path, baseline=baseline, generic=generic
        )
        if caption is not None:
            figure_list.append((f"Example: {dataset}", caption, Path(path)))

    k = max(folds.values(), default=1)
    extra = [sections.folds_section(fold_table, k, metric=metric)]
    fields = settings.get("fields") or {}
    if inputs.get("field_scores") and fields:
        field_long = field.read_field_scores(inputs["field_scores"], fields)
        fstats = field.field_stats(
            field_long, fields, subjects, models=scored, baseline=baseline, generic=generic, imported=imported
        )
        _write_table(fstats, outputs.get("field_stats"))
        extra.append(sections.field_section(field_long, fstats, fields, scored))
    crossover: list[str] = []
    if outputs.get("budget") is not None:
        part, crossover = _budget_part(
            inputs, outputs, long, subjects, generic=generic, palette=palette, models=models, metric=metric
        )
        extra.append(part)
    cost_html = ""
    if train_cost is not None:
        infer_cost = costs.inference_costs(inputs.get("infer_benchmarks") or {}, tests)
        _write_table(train_cost, outputs.get("costs"))
        _write_table(infer_cost, outputs.get("infer_costs"))
        cost_html = sections.costs_section(train_cost, infer_cost, text.costs_note())

    card_table = tables.read_model_cards(_first_instances(cards)) if cards else None
    n_inf = int(summary["n_psnr_inf"].sum()) if not summary.empty else 0
    footnotes = [
        "PSNR is infinite for an image reproduced exactly. Such images are left out of the PSNR mean, sd and "
        f"differences (not capped), and counted in summary.tsv's n_psnr_inf column: {n_inf} image(s) in this study.",
        f"wins vs {baseline}: the fraction of test images, paired by image_id, on which the model's RMSE is "
        f"strictly lower than {baseline}'s (a description, not a test: verdicts come from stats.tsv).",
        "Standard deviations are sample standard deviations (ddof = 1) over test images; summary.tsv keeps every "
        "number unrounded.",
    ]
    first_histories = {m: runs[min(runs)] for m, runs in histories.items() if runs}
    page = html.render(
        title=settings["title"],
        conventions=settings.get("conventions") or text.default_conventions(settings["scale"]),
        compared=text.compared_sentence(
            scored, datasets, baseline=baseline, generic=generic, scale=settings["scale"], cost=card_table
        ),
        summary=summary,
        datasets=datasets,
        best=tables.best_models(summary),
        answers=meaning.answers(table, scored, datasets, baseline=baseline, generic=generic, metric=metric),
        advice=_with_crossover(
            meaning.what_this_means(
                table,
                scored,
                datasets,
                baseline=baseline,
                generic=generic,
                subjects=subjects,
                histories=first_histories,
                degradations=settings.get("degradations"),
                metric=metric,
            ),
            crossover,
        ),
        stats=table,
        stats_note=text.stats_note(),
        figures=[(heading, caption, path.read_bytes()) for heading, caption, path in figure_list],
        cost=card_table,
        footnotes=footnotes,
        baseline=baseline,
        generic=generic,
        sections=extra,
        costs=cost_html,
        skipped=settings.get("skipped"),
        plan=plan,
        answer=answer,
    )
    write_text_atomic(outputs["html"], page)
