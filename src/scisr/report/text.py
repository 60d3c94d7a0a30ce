"""The report's prose: conventions, what was compared, the declared statistical plan and the notes of each part.

Strings only, built from names, settings and counts; the numbers of results come from stats.tsv elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from scisr.report import stats

METRIC_NAMES = {"rmse": "RMSE", "psnr": "PSNR", "ssim": "SSIM"}
MINUS = "\u2212"


def number(value: Any, digits: int = 4, *, signed: bool = False) -> str:
    """A number for reading: `digits` decimals, or two significant digits in scientific notation when it is
    non-zero but would print as zero; a true minus sign; an en dash when missing; infinity as a sign."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"
    if isinstance(value, float) and math.isinf(value):
        return "\u221e" if value > 0 else f"{MINUS}\u221e"
    sign = "+" if signed else ""
    tiny = value != 0 and abs(value) < 0.5 * 10.0**-digits
    text = f"{value:{sign}.1e}" if tiny else f"{value:{sign}.{digits}f}"
    return text.replace("-", MINUS)


def metric_name(metric: str) -> str:
    """How a metric is written in prose: RMSE, PSNR, SSIM, or the column name."""
    return METRIC_NAMES.get(metric, metric)


def default_conventions(scale: int) -> str:
    """The metric conventions sentence printed under the title."""
    return (
        f"Metric conventions: float data in [0, 1] after normalization (data_range = 1); a border of {scale} px "
        "is cropped on every side before scoring; SSIM uses a Gaussian window with \u03c3 = 1.5 (Wang et al. 2004). "
        "RMSE: lower is better; PSNR (dB) and SSIM: higher is better."
    )


def compared_sentence(
    models: list[str], datasets: list[str], *, baseline: str, generic: str, scale: int, cost: pd.DataFrame | None = None
) -> str:
    """A sentence saying what was compared, built from the names present and their model cards (`cost`)."""
    cards = cost.drop_duplicates("model").set_index("model") if cost is not None and not cost.empty else None
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
        f"\u00d7{scale} super-resolution: {len(models)} models \u2014 "
        + "; ".join(bits)
        + f" \u2014 scored on the held-out test images of {len(datasets)} dataset(s): {', '.join(datasets)}."
    )


def folds_sentence(folds: Mapping[str, int], generic: str) -> str:
    """How the test images were held out: a single holdout, or k-fold cross-validation over subjects."""
    crossed = sorted(d for d, k in folds.items() if k > 1)
    single = sorted(d for d, k in folds.items() if k <= 1)
    if not crossed:
        return (
            "Single holdout: each dataset's subject groups were split once into train, val and test "
            "(split.fractions); every model is scored on the test subjects only."
        )
    k = max(folds[d] for d in crossed)
    text = (
        f"{k}-fold cross-validation over subjects on {', '.join(crossed)}: each subject group is in exactly one "
        f"fold; fold i's models learnt from the other folds' subjects and are scored on fold i's, so every "
        f"subject is tested once, by models that never saw it, and the statistics pool all folds. Every model "
        f"that learns from such a dataset is trained {k} times."
    )
    if single:
        text += (
            f" {', '.join(single)} keeps a single holdout (the data {generic} learns from: that model is "
            "trained once and scores every fold's test images)."
        )
    return text


def plan_items(
    stats_table: pd.DataFrame, *, folds: Mapping[str, int], primary_metric: str, generic: str, baseline: str
) -> list[str]:
    """The declared statistical plan as list items: question, primary family, unit, test, secondary, power."""
    name = metric_name(primary_metric)
    primary = stats_table[stats_table["family"] == stats.PRIMARY] if not stats_table.empty else stats_table
    members = [f"{r.model} vs {r.reference} on {r.dataset}" for r in primary.itertuples()]
    m = len(members)
    items = [
        f"Question: on each domain dataset, is a model trained or fine-tuned on that domain (or an imported "
        f"model) better than the generic model ({generic}) at super-resolving held-out subjects?",
        (
            f"Primary family ({m} comparison{'s' if m != 1 else ''}, on {name}): " + "; ".join(members) + ". "
            f"Holm's correction runs over these {m} only, at \u03b1 = {stats.ALPHA}."
            if m
            else f"Primary family: empty \u2014 no domain dataset has its own, fine-tuned or imported model "
            f"scored beside {generic}."
        ),
        "Unit of analysis: the subject (the split group: a patient, a sky field). Each test image's paired "
        "difference (model \u2212 reference) is averaged per subject; every subject weighs the same. "
        + folds_sentence(folds, generic),
        f"Test and interval: two-sided Wilcoxon signed-rank test on the per-subject differences (exact up to "
        f"{stats.EXACT_MAX} subjects without ties); 95% percentile bootstrap CI over subjects ({stats.N_BOOT} "
        "resamples). Effect sizes beside them: mean and median per-subject difference and the share of subjects "
        "improved.",
        f"Secondary (exploratory): every other comparison \u2014 each model against {baseline}, models on other "
        "domains' test sets, the other metrics and the field metrics \u2014 Holm within its own family (one "
        "dataset, one metric, one reference), labelled secondary in stats.tsv.",
    ]
    items += power_lines(primary)
    return items


def power_lines(primary: pd.DataFrame) -> list[str]:
    """Per domain: the smallest Holm-adjusted p its subjects can reach in the primary family, and the least n."""
    if primary.empty:
        return []
    m = int(primary["family_size"].iloc[0])
    need = stats.subjects_needed(m)
    lines = []
    for dataset, rows in primary.groupby("dataset", sort=False):
        n = int(rows["n_subjects"].max())
        reach = stats.reachable_p(n, m)
        state = "a difference can be significant" if reach < stats.ALPHA else "no difference can be significant"
        lines.append(
            f"Power on {dataset}: {n} test subject(s) and a family of {m}: the smallest Holm-adjusted p "
            f"the exact test can reach is {m} \u00d7 2/2^{n} = {reach:.3g}, so {state} "
            f"(at least {need} subjects are needed)."
        )
    return lines


def stats_note(n_boot: int = stats.N_BOOT, seed: int = stats.SEED) -> str:
    """How verdicts are reached, for the page and the stats.tsv conventions."""
    return (
        "Verdicts come from paired comparisons at the subject level, never from means alone: each test image's "
        "difference (model \u2212 reference) is averaged per subject (tiles and slices of one subject form one "
        f"cluster); the 95% CI is a percentile bootstrap over subjects ({n_boot} resamples, seed {seed}); the "
        "p-value is a two-sided Wilcoxon signed-rank test on the per-subject differences (exact up to "
        f"{stats.EXACT_MAX} subjects without ties, else the normal approximation), Holm-corrected within its "
        f"family (the primary family, or one secondary family per dataset, metric and reference); significant "
        f"means Holm p < {stats.ALPHA}. When even the smallest p the subjects allow (2/2\u207f for n subjects, "
        "times the family size after Holm) cannot reach it, the row reads \u201ctoo few subjects to tell\u201d."
    )


def budget_note(metric: str = "rmse") -> str:
    """How the budget curves and the crossover are computed, for the page."""
    name = metric_name(metric)
    return (
        "Each model is trained once per fold; its exported (EMA) generator is saved at each budget of "
        "study.budgets and scored on the test images of the fold it never saw, and the final model is the last "
        f"point. Points: the paired difference of {name} to the generic model at the same budget (the same test "
        "images, averaged per subject, pooled over folds) with its 95% bootstrap CI over subjects. Cost: training "
        "wall seconds up to the snapshot (validation included; mean over folds: one model's cost), plus, for a "
        "fine-tuned model, the training seconds of the model it started from; device-hours are CPU-hours "
        "(seconds \u00d7 threads \u00d7 processes / 3600) or GPU-hours (seconds \u00d7 GPUs / 3600). Crossover: "
        f"the smallest budget at which that CI lies entirely on the better side of zero, with at least "
        f"{stats.MIN_SUBJECTS} test subjects. All points are in budget.tsv."
    )


def costs_note() -> str:
    """The cost table's conventions."""
    return (
        "Training: wall time per stage from the model cards (validation included, summed over resumed runs), "
        "summed over a model's runs (one per fold under cross-validation; costs.tsv has each fold's rows); "
        "device-hours are CPU-hours (seconds \u00d7 threads \u00d7 processes / 3600) or GPU-hours (seconds "
        "\u00d7 GPUs / 3600); it/s and patches/s (batch size \u00d7 it/s) per stage; cumulative adds the "
        "training of the model(s) a fine-tuned one started from; job time and peak RSS from Snakemake's "
        "benchmark files of the train jobs (start-up and export included). Inference: the infer jobs' benchmark "
        "wall time (start-up and PNG writing included) per megapixel of predicted HR images, summed over folds, "
        "and their peak RSS. All numbers are in costs.tsv and infer_costs.tsv."
    )


def cannot_show(folds: Mapping[str, int], counts: Mapping[str, int], *, needed: int) -> list[str]:
    """What this study cannot show, from its design: domains with too few test subjects for an answer."""
    lines = []
    for dataset, n in counts.items():
        if n < needed:
            lines.append(
                f"{dataset} has {n} test subject(s): fewer than the {needed} the primary family needs, "
                "so no primary verdict can be significant here whatever the models do"
                + (" (raise study.folds or add subjects)" if folds.get(dataset, 1) <= 1 else " (add subjects)")
                + "."
            )
    return lines


def model_list(names: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1] if names else ""
