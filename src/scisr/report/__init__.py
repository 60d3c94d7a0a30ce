"""The study's report: summary.tsv, seaborn figures and a self-contained index.html."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from PIL import Image

from scisr.io.files import atomic_path, read_png16, write_text_atomic
from scisr.prepare.split import pair_dirs
from scisr.report import budget, costs, field, figures, html, meaning, sections, stats, tables

__all__ = ["build_report", "compared_sentence", "default_conventions", "stats_note"]

PathLike = str | os.PathLike
PANEL_CROP = 128
HISTORY_COLUMNS = ("iteration", "stage", "val_rmse", "val_psnr")


def default_conventions(scale: int) -> str:
    """The metric conventions sentence printed under the title."""
    return (
        f"Metric conventions: float data in [0, 1] after normalization (data_range = 1); a border of {scale} px "
        "is cropped on every side before scoring; SSIM uses a Gaussian window with \u03c3 = 1.5 (Wang et al. 2004). "
        "RMSE: lower is better; PSNR (dB) and SSIM: higher is better."
    )


def compared_sentence(models: list[str], datasets: list[str], *, baseline: str, generic: str, scale: int,
              cost: pd.DataFrame | None = None) -> str:
    """A sentence saying what was compared, built from the names present and their model cards (`cost`)."""
    cards = cost.set_index("model") if cost is not None and not cost.empty else None
    imported, tuned, own = [], [], []
    for model in models:
        if model in (baseline, generic):
            continue
        row = cards.loc[model] if cards is not None and model in cards.index else None
        if row is not None and row["source"] == "imported":
            imported.append(f"{model} (imported from {row['origin']}, not trained here)")
        elif row is not None and isinstance(row["init_from"], str):
            tuned.append(f"{model} ({row['init_from']} fine-tuned on {row['dataset']})")
        else:
            own.append(model)
    bits = []
    if baseline in models:
        bits.append(f"{baseline} (the baseline)")
    if generic in models:
        bits.append(f"{generic} (trained on natural photos)")
    if own:
        bits.append(", ".join(own) + " (each trained on its own kind of scientific image)")
    bits += imported + tuned
    return (
        f"\u00d7{scale} super-resolution: {len(models)} models \u2014 " + "; ".join(bits)
        + f" \u2014 scored on the held-out test images of {len(datasets)} dataset(s): {', '.join(datasets)}."
    )


def stats_note(n_boot: int = stats.N_BOOT, seed: int = stats.SEED) -> str:
    """How verdicts are reached, for the page and the stats.tsv conventions."""
    return (
        "Verdicts come from paired comparisons at the subject level, never from means alone: each test image's "
        "difference (model \u2212 reference) is averaged per subject (tiles and slices of one subject form one "
        f"cluster); the 95% CI is a percentile bootstrap over subjects ({n_boot} resamples, seed {seed}); the "
        "p-value is a two-sided Wilcoxon signed-rank test on the per-subject differences (exact up to "
        f"{stats.EXACT_MAX} subjects without ties, else the normal approximation), Holm-corrected over all "
        f"comparisons of the same metric; significant means Holm p < {stats.ALPHA}. With fewer than "
        f"{stats.MIN_SUBJECTS} subjects no difference can reach p < 0.05 (the exact test's smallest p is "
        "2/2\u207f), so those read \u201ctoo few subjects to tell\u201d. Answer lines use RMSE, the study's "
        "primary metric; stats.tsv holds every metric."
    )


def _read_histories(histories: Mapping[str, PathLike]) -> dict[str, pd.DataFrame]:
    """Read history.tsv files, checking the columns the learning curves need."""
    out = {}
    for model, path in histories.items():
        frame = pd.read_csv(path, sep="\t")
        missing = set(HISTORY_COLUMNS) - set(frame.columns)
        if missing:
            raise ValueError(f"{path}: missing column(s) {sorted(missing)} needed for the learning curves")
        out[model] = frame
    return out


def _panel_image(hr_dir: Path) -> Path | None:
    """The test image shown in a panel: the largest HR image, ties broken by name."""
    candidates = []
    for path in sorted(hr_dir.glob("*.png")):
        with Image.open(path) as im:
            width, height = im.size
        candidates.append((-width * height, path.name, path))
    return min(candidates)[2] if candidates else None


def _panel_models(models: list[str], dataset: str, *, baseline: str, generic: str) -> list[str]:
    """Panel columns between LR and HR: baseline, generic, the dataset's own model(s)."""
    own = sorted((m for m in models if m == dataset or m.startswith(f"{dataset}_")), key=lambda m: (m != dataset, m))
    return list(dict.fromkeys([m for m in (baseline, generic, *own) if m in models]))


def _build_panel(
    dataset: str, test_dir: PathLike, predictions: Mapping[str, PathLike], long: pd.DataFrame, out_path: Path, *,
    baseline: str, generic: str
) -> str | None:
    """Write the dataset's panel figure to `out_path`; return its caption, or None without test images."""
    hr_dir, lr_dir = pair_dirs(test_dir)
    hr_path = _panel_image(hr_dir)
    if hr_path is None:
        return None
    hr = read_png16(hr_path)
    lr = read_png16(lr_dir / hr_path.name)
    scale = max(1, round(hr.shape[0] / lr.shape[0]))
    box = figures.centre_box(hr.shape, PANEL_CROP, multiple=scale)
    images = {"LR (nearest)": figures.nearest_upsample(lr, hr.shape)[box]}
    predictions = {m: Path(p) for m, p in predictions.items()}
    image_id = hr_path.stem
    psnr: dict[str, float] = {}
    shown = []
    for model in _panel_models(list(predictions), dataset, baseline=baseline, generic=generic):
        pred_path = predictions[model] / hr_path.name
        if not pred_path.exists():
            continue
        pred = read_png16(pred_path)
        if pred.shape != hr.shape:
            raise ValueError(f"{pred_path}: shape {pred.shape} differs from HR {hr.shape}; re-run inference")
        images[model] = pred[box]
        shown.append(model)
        hit = long[(long["model"] == model) & (long["dataset"] == dataset) & (long["image_id"] == image_id)]
        if not hit.empty:
            psnr[model] = float(hit["psnr"].iloc[0])
    images["HR"] = hr[box]
    side = box[0].stop - box[0].start
    title = (f"{dataset}: test image {image_id} ({hr.shape[1]}\u00d7{hr.shape[0]} px), centred {side}\u00d7{side} "
             f"HR crop; PSNR of the whole image")
    figures.panel_figure(images, psnr, out_path, title=title)
    return (
        f"{dataset}: the largest test image ({image_id}), a centred {side}\u00d7{side} px crop. Top: LR "
        f"(nearest-neighbour enlarged \u00d7{scale} so pixels line up), {', '.join(shown)}, HR, all on the HR crop's "
        "0.5\u201399.5 percentile grey scale; titles give each prediction's PSNR on the whole image. "
        "Middle: the crop's most detailed region (highest local standard deviation of HR, orange frame above), "
        "enlarged on the same grey scale. Bottom: absolute error to HR on one colour scale shared by all columns."
    )


def budget_note() -> str:
    """How the budget curves and the crossover are computed, for the page."""
    return (
        "Each model is trained once; its exported (EMA) generator is saved at each budget of study.budgets and "
        "scored on the domain's test set, and the final model is the last point. Points: mean over subjects of "
        "the per-subject mean RMSE with a 95% bootstrap CI over subjects. Cost: training wall seconds up to the "
        "snapshot (validation included), plus, for a fine-tuned model, all training seconds of the model it "
        "started from; device-hours are CPU-hours (seconds × threads × processes / 3600) or GPU-hours "
        "(seconds × GPUs / 3600). Crossover: the smallest budget at which the paired difference own model "
        "− generic at that budget (same test images, averaged per subject) has a 95% bootstrap CI entirely "
        f"below zero, with at least {stats.MIN_SUBJECTS} test subjects. All points are in budget.tsv."
    )


def costs_note() -> str:
    """The cost table's conventions."""
    return (
        "Training: wall time per stage from the model card (validation included, summed over resumed runs); "
        "device-hours are CPU-hours (seconds × threads × processes / 3600) or GPU-hours (seconds "
        "× GPUs / 3600); it/s and patches/s (batch size × it/s) per stage; cumulative adds the "
        "training of the model a fine-tuned one started from; job and peak RSS from Snakemake's benchmark file "
        "of the train job's last run (start-up and export included). Inference: the infer job's benchmark wall "
        "time (start-up and PNG writing included) per megapixel of predicted HR images, and its peak RSS. "
        "All numbers are in costs.tsv and infer_costs.tsv."
    )


def _budget_part(budget_scores, budget_tables, cards, long, subjects, *, generic, palette, models, budget_path,
                 figure_paths) -> tuple[str, list]:
    """Budget points and crossover statements: budget.tsv, one figure per domain, the section's HTML."""
    points, diffs = budget.budget_points(budget_scores, budget_tables, cards, long, subjects)
    with atomic_path(budget_path) as tmp:
        points.merge(diffs.rename(columns={"mean_diff": "diff_vs_reference", "ci_low": "diff_ci_low",
                                           "ci_high": "diff_ci_high", "n_subjects": "diff_subjects"}),
                     on=["dataset", "model", "budget", "metric"], how="left"
                     ).to_csv(tmp, sep="\t", index=False, na_rep="NaN")
    statements, shown = [], []
    for dataset, by_model in budget_scores.items():
        own = [m for m in by_model if m != generic]
        lines = [budget.crossover_statement(dataset, m, generic, diffs, points) for m in own]
        statements += lines
        path = Path(figure_paths[dataset])
        figures.budget_figure(points, path, dataset=dataset, models=[m for m in models if m in by_model],
                              palette=palette, statement=" ".join(lines))
        shown.append((f"Budget curve: {dataset}", f"{dataset} test set: mean RMSE over subjects (95% bootstrap CI) "
                      "of the generic model's and the domain model(s)' snapshots against cumulative training wall "
                      "time (left) and device-hours (right), both on log scales; labels give the budget in "
                      "iterations, the last point of each line is the final model. Lower is better.",
                      path.read_bytes()))
    return sections.budget_section(statements, shown, budget_note()), statements


def _with_crossover(advice: list[meaning.Advice], statements: list[str]) -> list[meaning.Advice]:
    """Add each domain's crossover statement to its caveats (the budget the answer holds at)."""
    for item in advice:
        item.caveats += [f"Budget crossover: {s}" for s in statements if s.startswith(f"{item.dataset}: ")]
    return advice


def build_report(
    *,
    scores: Mapping[str, Mapping[str, PathLike]],
    predictions: Mapping[str, Mapping[str, PathLike]],
    histories: Mapping[str, PathLike],
    cards: Mapping[str, PathLike],
    test_dirs: Mapping[str, PathLike],
    split_tables: Mapping[str, PathLike] | None,
    html_path: PathLike,
    summary_path: PathLike,
    stats_path: PathLike,
    metrics_path: PathLike,
    heatmap_path: PathLike,
    curves_path: PathLike,
    panel_paths: Mapping[str, PathLike],
    baseline: str,
    generic: str,
    title: str,
    scale: int,
    degradations: Mapping[str, str] | None = None,
    conventions: str | None = None,
    field_scores: Mapping[str, Mapping[str, PathLike]] | None = None,
    fields: Mapping[str, str] | None = None,
    field_stats_path: PathLike | None = None,
    budget_scores: Mapping[str, Mapping[str, Mapping[int, PathLike]]] | None = None,
    budget_tables: Mapping[str, PathLike] | None = None,
    budget_path: PathLike | None = None,
    budget_paths: Mapping[str, PathLike] | None = None,
    train_benchmarks: Mapping[str, PathLike] | None = None,
    infer_benchmarks: Mapping[str, Mapping[str, PathLike]] | None = None,
    costs_path: PathLike | None = None,
    infer_costs_path: PathLike | None = None,
    skipped: Mapping[str, str] | None = None,
) -> None:
    """Write the summary and statistics tables, the figures and the self-contained HTML page to the paths given.

    Inputs: `scores` and `predictions` are {model: {dataset: score TSV / prediction folder}}, `histories` and
    `cards` {model: history.tsv / model.yaml}, `test_dirs` {dataset: test split part}, `split_tables` {dataset:
    split.tsv} (image -> subject, for subject-level statistics; None: each image counts as its own subject),
    `degradations` {dataset: degradation name} for the caveats, `skipped` {model: why the workflow left it out};
    `cards` holds every model's card (trained and imported), `histories` only trained models'. Outputs:
    `panel_paths` is {dataset: PNG}.

    Optional parts: `field_scores` {dataset: {model: field TSV}} with `fields` {dataset: mri|astronomy} ->
    field_stats_path; `budget_scores` {dataset: {model (generic first): {budget: score TSV}}} with `budget_tables`
    {model: budgets.tsv} -> budget_path (points) and `budget_paths` {dataset: figure}; `train_benchmarks` {model:
    TSV} and `infer_benchmarks` {model: {dataset: TSV}} (Snakemake benchmark files) -> costs_path, infer_costs_path.
    """
    long = tables.read_scores(scores)
    summary = tables.summarize(long, baseline=baseline, generic=generic)
    with atomic_path(summary_path) as tmp:
        summary.to_csv(tmp, sep="\t", index=False, na_rep="NaN")

    models = tables.model_order(long["model"].tolist() + list(histories), baseline=baseline, generic=generic)
    datasets = tables.dataset_order(long["dataset"].tolist(), generic=generic)
    palette = figures.model_palette(models, baseline=baseline)
    figure_list: list[tuple[str, str, Path]] = []

    subjects = stats.subjects_from_split(split_tables) if split_tables else None
    scored = [m for m in models if m in set(long["model"])]
    table = stats.paired_stats(long, subjects, baseline=baseline, generic=generic, models=scored,
                               datasets=datasets)
    with atomic_path(stats_path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="NaN")

    figures.metrics_figure(long, Path(metrics_path), models=scored, datasets=datasets, palette=palette)
    figure_list.append(("Scores per model and dataset", "Each dot is one test image; diamonds with bars are the "
                        "mean \u00b1 sd. Images with infinite PSNR are not drawn in the PSNR panel.",
                        Path(metrics_path)))

    figures.heatmap_figure(table, Path(heatmap_path), models=scored, datasets=datasets, baseline=baseline)
    figure_list.append(("Cross-domain matrix", f"Every model on every test set: mean over subjects of the "
                        f"per-image difference to {baseline} (left PSNR in dB, right RMSE). Blue cells improve on "
                        f"{baseline}, red cells are worse, in both panels. Marks from stats.tsv: * significant "
                        "after Holm correction, ns not significant, ? too few subjects to tell. How specific is "
                        "\u201cspecific\u201d: read a model's row across the datasets.", Path(heatmap_path)))

    history_frames = _read_histories(histories)
    figures.learning_curves_figure(history_frames, Path(curves_path),
                                   models=[m for m in models if m in history_frames], palette=palette)
    figure_list.append(("Learning curves", "Validation RMSE (the study's curve) and PSNR against training iteration "
                        "for each trained model, each on its own dataset's validation split (so levels differ "
                        "between models); "
                        "a dotted line marks where the GAN stage starts.",
                        Path(curves_path)))

    for dataset in tables.dataset_order(list(panel_paths), generic=generic):
        path = Path(panel_paths[dataset])
        shown = {model: by_dataset[dataset] for model, by_dataset in predictions.items() if dataset in by_dataset}
        caption = _build_panel(dataset, test_dirs[dataset], shown, long, path, baseline=baseline, generic=generic)
        if caption is not None:
            figure_list.append((f"Example: {dataset}", caption, path))

    extra = []
    if field_scores and fields:
        field_long = field.read_field_scores(field_scores, fields)
        fstats = field.field_stats(field_long, fields, subjects, models=scored, baseline=baseline, generic=generic)
        if field_stats_path is not None:
            with atomic_path(field_stats_path) as tmp:
                fstats.to_csv(tmp, sep="\t", index=False, na_rep="NaN")
        extra.append(sections.field_section(field_long, fstats, fields, scored))
    crossover: list[str] = []
    if budget_path is not None:
        part, crossover = _budget_part(budget_scores or {}, budget_tables or {}, cards, long, subjects, generic=generic,
                                       palette=palette, models=models, budget_path=budget_path,
                                       figure_paths=budget_paths or {})
        extra.append(part)
    cost_html = ""
    if costs_path is not None:
        train_cost = costs.training_costs(cards, train_benchmarks)
        infer_cost = costs.inference_costs(infer_benchmarks or {}, test_dirs)
        with atomic_path(costs_path) as tmp:
            train_cost.to_csv(tmp, sep="\t", index=False, na_rep="NaN")
        if infer_costs_path is not None:
            with atomic_path(infer_costs_path) as tmp:
                infer_cost.to_csv(tmp, sep="\t", index=False, na_rep="NaN")
        cost_html = sections.costs_section(train_cost, infer_cost, costs_note())

    cost = tables.read_model_cards(cards) if cards else None
    n_inf = int(summary["n_psnr_inf"].sum()) if not summary.empty else 0
    footnotes = [
        "PSNR is infinite for an image reproduced exactly. Such images are left out of the PSNR mean, sd and "
        f"differences (not capped), and counted in summary.tsv's n_psnr_inf column: {n_inf} image(s) in this study.",
        f"wins vs {baseline}: the fraction of test images, paired by image_id, on which the model's RMSE is "
        f"strictly lower than {baseline}'s (a description, not a test: verdicts come from stats.tsv).",
        "Standard deviations are sample standard deviations (ddof = 1) over test images; summary.tsv keeps every "
        "number unrounded.",
    ]
    page = html.render(
        title=title,
        conventions=conventions if conventions is not None else default_conventions(scale),
        compared=compared_sentence(scored, datasets, baseline=baseline, generic=generic, scale=scale, cost=cost),
        summary=summary,
        datasets=datasets,
        best=tables.best_models(summary),
        answers=meaning.answers(table, scored, datasets, baseline=baseline, generic=generic),
        advice=_with_crossover(meaning.what_this_means(table, scored, datasets, baseline=baseline, generic=generic,
                                                       subjects=subjects, histories=history_frames,
                                                       degradations=degradations), crossover),
        stats=table,
        stats_note=stats_note(),
        figures=[(heading, caption, path.read_bytes()) for heading, caption, path in figure_list],
        cost=cost,
        footnotes=footnotes,
        baseline=baseline,
        generic=generic,
        sections=extra,
        costs=cost_html,
        skipped=skipped,
    )
    write_text_atomic(html_path, page)
