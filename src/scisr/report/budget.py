"""The budget crossover: test scores of each model's budget snapshots against their training cost, and the
smallest budget at which a domain's own model beats the generic one.

Conventions: a point is one model's snapshot at one budget (study.budgets; scisr.budgets) plus its final model
(budget = its total iterations, from the main scores), scored on the domain's test set; under cross-validation
each fold's test images are scored by the snapshot of the instance that never saw them, and the folds are pooled.
Its value is the mean over subjects of the per-subject mean score, with a 95% percentile bootstrap CI over subjects
(scisr.report.stats). Cost: the training wall seconds up to the snapshot (budgets.tsv; the card's total for the
final model), the mean over the instances used (one model's cost), plus, for a fine-tuned model, the training
seconds of the model it started from (init_from); device-hours as in scisr.report.costs. Crossover: the smallest
budget at which the paired difference own model - generic (both at that budget, the same test images, averaged per
subject) has a 95% bootstrap CI entirely on the better side of zero (RMSE: below), with at least MIN_SUBJECTS
subjects; otherwise "no crossover in the range".
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
import pandas as pd

from scisr.budgets import read_budget_table
from scisr.card import ModelCard
from scisr.folds import instance_fold
from scisr.report import stats
from scisr.report.costs import cumulative_seconds, device_hours
from scisr.report.tables import LOWER_IS_BETTER, by_fold, read_scores
from scisr.report.text import number

PathLike = str | os.PathLike
POINT_COLUMNS = [
    "dataset",
    "model",
    "budget",
    "iteration",
    "stage",
    "seconds",
    "cumulative_seconds",
    "device_hours",
    "device_hours_unit",
    "metric",
    "n_subjects",
    "mean",
    "ci_low",
    "ci_high",
]
DIFF_COLUMNS = [
    "dataset",
    "model",
    "reference",
    "budget",
    "iteration",
    "cumulative_seconds",
    "device_hours",
    "device_hours_unit",
    "metric",
    "n_subjects",
    "mean_diff",
    "ci_low",
    "ci_high",
]
FINAL = "final"


def _signed(value: float) -> str:
    """A signed number with four decimals (or two significant digits when smaller) and a true minus sign."""
    return number(value, 4, signed=True)


def _key(model: str, budget: int) -> str:
    return f"{model}@{budget}"


def _subject_means(frame: pd.DataFrame, subjects: pd.DataFrame | None, dataset: str, metric: str) -> np.ndarray:
    """Per-subject means of one model's finite scores on one dataset (each image its own subject without a table)."""
    frame = frame[np.isfinite(frame[metric])]
    ids = frame["image_id"].astype(str)
    if subjects is not None and (subjects["dataset"] == dataset).any():
        known = subjects[subjects["dataset"] == dataset].drop_duplicates("image_id").set_index("image_id")
        ids = ids.map(known["subject_id"]).fillna(ids)
    return frame[metric].groupby(ids.to_numpy()).mean().to_numpy()


def _instance(fold: int, instances: Mapping[int, object]) -> int:
    """The instance of a model (keys of its cards) that scores test fold `fold` (scisr.folds.instance_fold)."""
    return sorted(instances)[instance_fold(int(fold), len(instances)) - 1]


def budget_points(
    budget_scores: Mapping[str, Mapping[str, Mapping[int, Mapping[int, PathLike]]]],
    budget_tables: Mapping[str, Mapping[int, PathLike]],
    cards: Mapping[str, Mapping[int, PathLike]],
    long: pd.DataFrame,
    subjects: pd.DataFrame | None,
    metrics: tuple[str, ...] = ("rmse", "psnr"),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Points (one per dataset, model, budget, metric) and paired differences to the first model of each dataset.

    `budget_scores` is {dataset: {model: {budget: {test fold: score TSV}}}}, the first model of each dataset the
    generic one; `budget_tables` and `cards` are {model: {fold: budgets.tsv / model.yaml}} (one per instance);
    `long` holds the main scores (each model's final point).
    """
    read = {model: {f: ModelCard.read(path) for f, path in by_fold(tree).items()} for model, tree in cards.items()}
    tables = {
        model: {f: read_budget_table(path).set_index("budget") for f, path in by_fold(tree).items()}
        for model, tree in budget_tables.items()
    }
    frames, meta = [], {}
    for dataset, by_model in budget_scores.items():
        for model, by_budget in by_model.items():
            instances = read[model]
            done = set()
            for budget, tree in sorted(by_budget.items()):
                folds = by_fold(tree)
                used = sorted({_instance(f, tables[model]) for f in folds})
                rows = [tables[model][i].loc[int(budget)] for i in used]
                iteration = int(rows[0]["iteration"])
                if iteration in done:
                    continue  # capped: the same snapshot as a smaller budget's
                done.add(iteration)
                frames.append(read_scores({_key(model, budget): {dataset: folds}}))
                cost = float(np.mean([_cumulative(model, i, float(r["seconds"]), read) for i, r in zip(used, rows)]))
                meta[(dataset, model, int(budget))] = (
                    iteration,
                    str(rows[0]["stage"]),
                    float(np.mean([float(r["seconds"]) for r in rows])),
                    cost,
                    instances[used[0]],
                )
            card = next(iter(instances.values()))
            total = card.total_iterations
            final = long[(long["model"] == model) & (long["dataset"] == dataset)]
            if total not in done and not final.empty:
                frames.append(final.assign(model=_key(model, total)))
                stage = next((s for s, n in reversed(card.iterations.items()) if n), FINAL)
                seconds = float(np.mean([c.total_wall_seconds for c in instances.values()]))
                cost = float(np.mean([_cumulative(model, i, c.total_wall_seconds, read) for i, c in instances.items()]))
                meta[(dataset, model, total)] = (total, stage, seconds, cost, card)
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model", "dataset", "image_id"])
    points, diffs = [], []
    for (dataset, model, budget), (iteration, stage, seconds, cumulative, card) in meta.items():
        hours, unit = device_hours(card, cumulative)
        sel = scores[(scores["model"] == _key(model, budget)) & (scores["dataset"] == dataset)]
        for metric in metrics:
            values = _subject_means(sel, subjects, dataset, metric)
            rng = np.random.default_rng([stats.SEED, budget, len(points)])
            low, high = stats.bootstrap_ci(values, rng=rng)
            points.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "budget": budget,
                    "iteration": iteration,
                    "stage": stage,
                    "seconds": seconds,
                    "cumulative_seconds": cumulative,
                    "device_hours": hours,
                    "device_hours_unit": unit,
                    "metric": metric,
                    "n_subjects": len(values),
                    "mean": float(values.mean()) if len(values) else math.nan,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        generic = next(iter(budget_scores[dataset]))
        if model != generic and (dataset, generic, budget) in meta:
            for metric in metrics:
                row = stats.compare(scores, subjects, dataset, _key(model, budget), _key(generic, budget), metric)
                diffs.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "reference": generic,
                        "budget": budget,
                        "iteration": iteration,
                        "cumulative_seconds": cumulative,
                        "device_hours": hours,
                        "device_hours_unit": unit,
                        "metric": metric,
                        "n_subjects": row["n_subjects"],
                        "mean_diff": row["mean_diff"],
                        "ci_low": row["ci_low"],
                        "ci_high": row["ci_high"],
                    }
                )
    point_frame = pd.DataFrame(points, columns=POINT_COLUMNS).sort_values(
        ["dataset", "model", "metric", "budget"], ignore_index=True
    )
    diff_frame = pd.DataFrame(diffs, columns=DIFF_COLUMNS).sort_values(
        ["dataset", "model", "metric", "budget"], ignore_index=True
    )
    return point_frame, diff_frame


def _cumulative(model: str, instance: int, seconds: float, cards: Mapping[str, Mapping[int, ModelCard]]) -> float:
    """Seconds of one instance up to a snapshot plus the whole training of the instance it started from."""
    card = cards[model][instance]
    return seconds + (cumulative_seconds(card.init_from, cards, init_fold(card)) if card.init_from else 0.0)


def init_fold(card: ModelCard) -> int:
    """The fold of the instance a fine-tuned model started from (its card; 1 for cards without it)."""
    init = (card.training or {}).get("init") or {}
    return int(init.get("fold") or 1)


def crossover(diffs: pd.DataFrame, metric: str = "rmse") -> tuple[int | None, str]:
    """The smallest budget whose difference CI is entirely better than zero, and why (or why none).

    `diffs` holds one model's rows against the generic one: budget, metric, n_subjects, mean_diff, ci_low, ci_high.
    Returns (budget, "crossing"), (None, "none") or (None, "few") when no budget has enough subjects.
    """
    rows = diffs[diffs["metric"] == metric].sort_values("budget")
    enough = rows[rows["n_subjects"] >= stats.MIN_SUBJECTS]
    if enough.empty:
        return None, "few"
    better = enough["ci_high"] < 0 if LOWER_IS_BETTER[metric] else enough["ci_low"] > 0
    if better.any():
        return int(enough.loc[better, "budget"].iloc[0]), "crossing"
    return None, "none"


def crossover_statement(
    dataset: str, model: str, generic: str, diffs: pd.DataFrame, points: pd.DataFrame, metric: str = "rmse"
) -> str:
    """One sentence: where `model` overtakes `generic` on `dataset`, or that it does not in the budgets tried."""
    rows = diffs[(diffs["dataset"] == dataset) & (diffs["model"] == model) & (diffs["metric"] == metric)]
    if rows.empty:
        return f"{dataset}: {model} and {generic} share no budget, so there is no crossover to state."
    budget, why = crossover(rows, metric)
    low, high = int(rows["budget"].min()), int(rows["budget"].max())
    name = metric.upper()
    if why == "few":
        n = int(rows["n_subjects"].max())
        return (
            f"{dataset}: too few test subjects ({n}) to place a crossover of {model} over {generic}; at least "
            f"{stats.MIN_SUBJECTS} are needed (budgets {low}\u2013{high} iterations)."
        )
    if why == "none":
        last = rows.sort_values("budget").iloc[-1]
        return (
            f"{dataset}: no crossover in the range {low}\u2013{high} iterations: at no budget is {model}'s "
            f"subject-level 95% CI of \u0394{name} against {generic} entirely better than zero (at {high}: "
            f"{_signed(last['mean_diff'])}, CI {_signed(last['ci_low'])} to {_signed(last['ci_high'])})."
        )
    row = rows[rows["budget"] == budget].iloc[0]
    cost = points[(points["dataset"] == dataset) & (points["budget"] == budget) & (points["metric"] == metric)]
    seconds = {m: float(s) for m, s in zip(cost["model"], cost["cumulative_seconds"])}
    spent = (
        f"; training cost at that budget {seconds[model]:.0f} s ({model}) vs {seconds[generic]:.0f} s ({generic})"
        if model in seconds and generic in seconds
        else ""
    )
    return (
        f"{dataset}: crossover at {budget} iterations \u2014 the smallest budget at which {model} is better "
        f"than {generic} trained as long (\u0394{name} {_signed(row['mean_diff'])}, 95% CI "
        f"{_signed(row['ci_low'])} to {_signed(row['ci_high'])} over {int(row['n_subjects'])} subjects){spent}."
    )
