"""Paired comparisons at the subject level under a declared plan: bootstrap CIs over subjects, Wilcoxon on
subject means, Holm within each family of comparisons.

Conventions (also written into every row of stats.tsv):
- A comparison pairs two models' scores of the same test image (by image_id) on one dataset;
  the difference is `model - reference`. Pairs whose value is not finite (PSNR of an exactly
  reproduced image is +inf) are dropped from that metric and counted in `n_dropped`.
- Images are grouped by subject (from the split phase's split.tsv: the split group of the image; tiles
  and slices of one subject form one cluster). Each subject's differences are averaged; `mean_diff` is
  the mean of these subject means (every subject weighs the same), so many tiles of one image cannot
  outvote another subject. Under cross-validation (study.folds k > 1) each image was tested in exactly
  one fold, by model instances that never saw its subject, and the rows pool every fold's subjects.
  Without a split table each image counts as its own subject (`subjects` column says so), which
  overstates confidence when images share a subject.
- Effect sizes a reader can weigh: `median_diff` (median of the per-subject differences) and
  `n_improved` / `share_improved` (subjects on which the model is better, by the metric's direction).
- 95% CI: percentile bootstrap (scipy.stats.bootstrap) that resamples subjects with replacement, N_BOOT resamples,
  a generator seeded by (SEED, the row's key), so a row's CI does not depend on the others.
- p-value: two-sided Wilcoxon signed-rank test on the per-subject mean differences
  (scipy.stats.wilcoxon, zero differences dropped as Wilcoxon did). Exact null distribution
  when there are at most 50 non-zero differences without ties; otherwise the normal
  approximation with tie correction (`test` column says which). All differences zero: p = 1.
- The declared plan (`families`): the primary family is, on each domain dataset (every dataset but the
  generic model's), its own models (the model named like it and `<dataset>_<suffix>` fine-tuned ones) and
  the imported models against the generic model, on the primary metric (study.primary_metric). Holm's
  step-down correction runs within that family only. Every other row (against the baseline, cross-domain,
  the other metrics, field metrics) is secondary: Holm within its own family (dataset, metric,
  reference), labelled `secondary` in `family`.
- Power: with n subjects the exact two-sided Wilcoxon test cannot give p below 2 / 2**n, so after Holm
  over a family of m comparisons no row can reach an adjusted p below m * 2 / 2**n (`p_min_reachable`).
- Verdicts: when `p_min_reachable` >= ALPHA (or fewer than 2 subjects) -> "too few subjects to tell"
  (no difference, however large, could be significant); otherwise p_holm < ALPHA -> "better" or "worse"
  (by the sign of mean_diff and the metric's direction), else "no significant difference".
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import bootstrap, wilcoxon

from scisr.prepare.split import read_split_table
from scisr.report.tables import LOWER_IS_BETTER

PathLike = str | os.PathLike
N_BOOT = 10_000
SEED = 0
ALPHA = 0.05
MIN_SUBJECTS = 6  # the budget crossover's least number of subjects (an exact Wilcoxon reaches 0.031 at 6)
EXACT_MAX = 50
PRIMARY = "primary"
VERDICTS = ("better", "worse", "no significant difference", "too few subjects to tell")
STATS_COLUMNS = [
    "dataset",
    "comparison",
    "model",
    "reference",
    "metric",
    "family",
    "family_size",
    "n_subjects",
    "n_images",
    "n_dropped",
    "shared_subjects",
    "mean_diff",
    "ci_low",
    "ci_high",
    "median_diff",
    "n_improved",
    "share_improved",
    "p_value",
    "p_min_possible",
    "p_min_reachable",
    "p_holm",
    "verdict",
    "difference",
    "subjects",
    "ci",
    "test",
    "correction",
]
SUBJECT_COLUMNS = ["dataset", "fold", "image_id", "subject_id", "split", "in_train"]
FOLD_COLUMNS = ["dataset", "model", "reference", "metric", "fold", "n_subjects", "n_images", "mean_diff"]


def subjects_from_split(split_tables: Mapping[str, PathLike], folds: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Image -> subject mapping of every dataset from split.tsv files, one row per fold and image: dataset,
    fold, image_id, subject_id, split, in_train.

    The subject of an image is its split group (split.tsv `group`: subjects joined because they must not be
    told apart, e.g. FITS frames of one sky field). `in_train` is True when that group also has images in
    that fold's training split (tiles of one big image and slabs of one volume are split apart in a single
    holdout, so their group is shared between train and test; under folds never). `folds` {dataset: k} keeps
    folds 1..k of each dataset (default: every fold in the table).
    """
    frames = []
    for dataset, path in split_tables.items():
        table = read_split_table(path)
        table = table[table["split"] != "excluded"]
        if folds is not None and dataset in folds:
            table = table[table["fold"] <= int(folds[dataset])]
        train = set(zip(table.loc[table["split"] == "train", "fold"], table.loc[table["split"] == "train", "group"]))
        in_train = [(f, g) in train for f, g in zip(table["fold"], table["group"])]
        frames.append(
            pd.DataFrame(
                {
                    "dataset": dataset,
                    "fold": table["fold"].astype("int64"),
                    "image_id": table["id"],
                    "subject_id": table["group"],
                    "split": table["split"],
                    "in_train": in_train,
                }
            )
        )
    if not frames:
        dtypes = {"in_train": "bool", "fold": "int64"}
        return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "str")) for c in SUBJECT_COLUMNS})
    return pd.concat(frames, ignore_index=True)[SUBJECT_COLUMNS]


def comparisons(
    models: Sequence[str],
    datasets: Sequence[str],
    *,
    baseline: str,
    generic: str,
    imported: Sequence[str] = ("pretrained",),
) -> list[tuple[str, str, str, str]]:
    """The (dataset, comparison, model, reference) pairs the report tests.

    Every model against the baseline on every dataset; on a domain dataset its own models
    (named like it: domain, or `<domain>_<suffix>` such as fine-tuned ones) and the `imported` ones
    against the generic model.
    """
    out = []
    for dataset in datasets:
        out.extend((dataset, f"vs {baseline}", model, baseline) for model in models if model != baseline)
        if generic not in models or dataset == generic:
            continue
        for model in models:
            if model == dataset:
                out.append((dataset, f"domain vs {generic}", model, generic))
            elif model.startswith(f"{dataset}_"):
                out.append((dataset, f"fine-tuned vs {generic}", model, generic))
            elif model in imported:
                out.append((dataset, f"imported vs {generic}", model, generic))
    return out


def is_primary(comparison: str, reference: str, metric: str, *, generic: str, primary_metric: str | None) -> bool:
    """Whether a comparison belongs to the declared primary family (module doc)."""
    return (
        primary_metric is not None
        and metric == primary_metric
        and reference == generic
        and comparison in (f"domain vs {generic}", f"fine-tuned vs {generic}", f"imported vs {generic}")
    )


def reachable_p(n_subjects: int, family_size: int) -> float:
    """The smallest Holm-adjusted p that n subjects can reach in a family of `family_size` comparisons."""
    if n_subjects < 1:
        return math.nan
    return min(1.0, max(1, family_size) * 2.0 ** (1 - n_subjects))


def subjects_needed(family_size: int, alpha: float = ALPHA) -> int:
    """The fewest subjects with which a difference can be significant after Holm over `family_size` rows."""
    n = 2
    while reachable_p(n, family_size) >= alpha:
        n += 1
    return n


def bootstrap_ci(
    values: np.ndarray, *, n_boot: int = N_BOOT, rng: np.random.Generator, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (one value per cluster), resampling clusters.

    The values are sorted first: the interval depends on them, not on the order of the subjects, which follows
    their pseudonyms and so differs between checkouts with different secrets. scipy.stats.bootstrap draws the
    resamples in batches of 2e6 / n values (memory stays bounded for many subjects); its draws are the ones the
    earlier hand-written loop made from the same generator, and its end points agree with that loop's to 1-2 ulp
    (its quantile's arithmetic: on the default study's stats.tsv 7 of 144 end points moved, by <= 4.4e-16)."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    result = bootstrap(
        (values,),
        np.mean,
        n_resamples=n_boot,
        batch=max(1, 2_000_000 // n),
        vectorized=True,
        method="percentile",
        confidence_level=level,
        rng=rng,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def wilcoxon_p(differences: np.ndarray) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p-value of per-subject differences, and which test gave it."""
    d = np.asarray(differences, dtype=np.float64)
    nonzero = d[d != 0]
    if len(d) == 0:
        return math.nan, "no pairs"
    if len(nonzero) == 0:
        return 1.0, "all differences zero"
    ties = len(np.unique(np.abs(nonzero))) < len(nonzero)
    if len(nonzero) <= EXACT_MAX and not ties:
        return float(wilcoxon(nonzero, method="exact").pvalue), "Wilcoxon signed-rank, exact"
    result = wilcoxon(nonzero, zero_method="wilcox", correction=False, method="approx")
    return float(result.pvalue), "Wilcoxon signed-rank, normal approximation (ties or n > 50)"


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values; NaN entries are not tested and stay NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out


def _verdict(
    n_subjects: int,
    mean_diff: float,
    p_holm: float,
    p_min_reachable: float,
    metric: str,
    lower_is_better: Mapping[str, bool] = LOWER_IS_BETTER,
) -> str:
    """The verdict word of one row (see the module docstring)."""
    if n_subjects < 2 or math.isnan(p_min_reachable) or p_min_reachable >= ALPHA:
        return "too few subjects to tell"
    if math.isnan(p_holm) or p_holm >= ALPHA or mean_diff == 0:
        return "no significant difference"
    lower = mean_diff < 0
    return "better" if lower == lower_is_better[metric] else "worse"


def _test_subjects(subjects: pd.DataFrame | None, dataset: str) -> pd.DataFrame | None:
    """The test rows of one dataset's subject table (one per tested image), or None without a table."""
    if subjects is None or not (subjects["dataset"] == dataset).any():
        return None
    sel = subjects[subjects["dataset"] == dataset]
    tested = sel[sel["split"] == "test"]
    return tested if not tested.empty else sel.drop_duplicates("image_id")


def subject_lookup(subjects: pd.DataFrame | None, dataset: str, image_ids: pd.Series) -> tuple[pd.Series, str]:
    """Subject of each image of one dataset, and how subjects were found."""
    tested = _test_subjects(subjects, dataset)
    if tested is None:
        return image_ids.astype(str), "each image its own subject (no split table)"
    known = tested.drop_duplicates("image_id").set_index("image_id")["subject_id"]
    found = image_ids.map(known)
    if found.isna().any():
        missing = image_ids[found.isna()].iloc[0]
        raise ValueError(
            f"{dataset}: scored image {missing!r} is not in the split table; "
            "the scores and split.tsv are from different runs: rerun the score phase"
        )
    return found.astype(str), "subjects from split.tsv"


def subject_differences(
    long: pd.DataFrame, subjects: pd.DataFrame | None, dataset: str, model: str, reference: str, metric: str
) -> tuple[pd.DataFrame, int, str]:
    """Per-subject mean differences `model - reference` of one metric on one dataset: a frame (subject_id,
    fold, n_images, diff), the number of pairs dropped as not finite, and how subjects were found."""
    sel = long[long["dataset"] == dataset]
    columns = ["image_id", metric] + (["fold"] if "fold" in sel.columns else [])
    a = sel.loc[sel["model"] == model, columns]
    b = sel.loc[sel["model"] == reference, ["image_id", metric]]
    pairs = a.merge(b, on="image_id", suffixes=("", "_ref"))
    finite = np.isfinite(pairs[metric]) & np.isfinite(pairs[f"{metric}_ref"])
    dropped = int((~finite).sum())
    pairs = pairs[finite]
    subject, how = subject_lookup(subjects, dataset, pairs["image_id"])
    frame = pd.DataFrame(
        {
            "subject_id": subject.to_numpy(),
            "fold": pairs["fold"].to_numpy() if "fold" in pairs else 1,
            "diff": (pairs[metric] - pairs[f"{metric}_ref"]).to_numpy(),
        }
    )
    grouped = frame.groupby("subject_id", sort=True)
    per_subject = pd.DataFrame(
        {"fold": grouped["fold"].first(), "n_images": grouped.size(), "diff": grouped["diff"].mean()}
    ).reset_index()
    return per_subject, dropped, how


def compare(
    long: pd.DataFrame,
    subjects: pd.DataFrame | None,
    dataset: str,
    model: str,
    reference: str,
    metric: str,
    *,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    lower_is_better: Mapping[str, bool] = LOWER_IS_BETTER,
) -> dict:
    """One paired comparison on one metric: subject counts, mean and median difference, subjects improved,
    bootstrap CI, Wilcoxon p."""
    per, dropped, how = subject_differences(long, subjects, dataset, model, reference, metric)
    values = per["diff"].to_numpy(dtype=np.float64)
    shared = 0
    tested = _test_subjects(subjects, dataset) if how.startswith("subjects") else None
    if tested is not None:
        shared_ids = set(tested.loc[tested["in_train"].astype(bool), "subject_id"])
        shared = int(per["subject_id"].isin(shared_ids).sum())
    key = zlib.crc32(f"{dataset}|{model}|{reference}|{metric}".encode())
    low, high = bootstrap_ci(values, n_boot=n_boot, rng=np.random.default_rng([seed, key]))
    p_value, test = wilcoxon_p(values)
    n = len(values)
    improved = int((values < 0).sum() if lower_is_better.get(metric, True) else (values > 0).sum())
    return {
        "dataset": dataset,
        "model": model,
        "reference": reference,
        "metric": metric,
        "n_subjects": n,
        "n_images": int(per["n_images"].sum()),
        "n_dropped": dropped,
        "shared_subjects": shared,
        "mean_diff": float(values.mean()) if n else math.nan,
        "ci_low": low,
        "ci_high": high,
        "median_diff": float(np.median(values)) if n else math.nan,
        "n_improved": improved,
        "share_improved": improved / n if n else math.nan,
        "p_value": p_value,
        "p_min_possible": 2.0 ** (1 - n) if n else math.nan,
        "difference": f"{model} - {reference}, mean of per-subject means",
        "subjects": how,
        "ci": f"95% percentile bootstrap over subjects, {n_boot} resamples, seed {seed}",
        "test": test,
    }


def paired_stats(
    long: pd.DataFrame,
    subjects: pd.DataFrame | None = None,
    *,
    baseline: str = "bicubic",
    generic: str = "generic",
    models: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    n_boot: int = N_BOOT,
    seed: int = SEED,
    metrics: Mapping[str, bool] | None = None,
    primary_metric: str | None = "rmse",
    imported: Sequence[str] = ("pretrained",),
) -> pd.DataFrame:
    """Every comparison of `comparisons` on every metric, Holm-corrected within its family, with verdicts.

    `metrics` maps the score columns to compare to whether lower is better (default RMSE, PSNR, SSIM);
    `primary_metric` names the metric of the primary family (None: every row is secondary, e.g. field
    metrics); `imported` the imported models compared with the generic one.
    """
    directions = dict(metrics) if metrics is not None else dict(LOWER_IS_BETTER)
    models = list(models) if models is not None else list(dict.fromkeys(long["model"]))
    datasets = list(datasets) if datasets is not None else list(dict.fromkeys(long["dataset"]))
    present = set(zip(long["model"], long["dataset"]))
    rows = []
    for dataset, kind, model, reference in comparisons(
        models, datasets, baseline=baseline, generic=generic, imported=imported
    ):
        if (model, dataset) not in present or (reference, dataset) not in present:
            continue
        for metric in directions:
            row = compare(
                long, subjects, dataset, model, reference, metric, n_boot=n_boot, seed=seed, lower_is_better=directions
            )
            primary = is_primary(kind, reference, metric, generic=generic, primary_metric=primary_metric)
            family = PRIMARY if primary else f"secondary: {dataset}, {metric}, vs {reference}"
            rows.append({"comparison": kind, **row, "family": family})
    table = pd.DataFrame(rows, columns=STATS_COLUMNS)
    if table.empty:
        return table
    table["p_holm"] = np.nan
    table["correction"] = ""
    for family, index in table.groupby("family", sort=False).groups.items():
        sel = table.index.isin(index)
        table.loc[sel, "family_size"] = int(sel.sum())
        table.loc[sel, "p_holm"] = holm(table.loc[sel, "p_value"].to_numpy())
        what = (
            "the primary family: domain, fine-tuned and imported models vs the generic model on "
            f"{primary_metric} on every domain dataset"
            if family == PRIMARY
            else family
        )
        table.loc[sel, "correction"] = f"Holm over the {int(sel.sum())} comparison(s) of {what}, alpha {ALPHA}"
    table["family_size"] = table["family_size"].astype("int64")
    table["p_min_reachable"] = [reachable_p(int(n), int(m)) for n, m in zip(table["n_subjects"], table["family_size"])]
    table["verdict"] = [
        _verdict(int(r.n_subjects), r.mean_diff, r.p_holm, r.p_min_reachable, r.metric, directions)
        for r in table.itertuples()
    ]
    return table[STATS_COLUMNS]


def fold_differences(long: pd.DataFrame, subjects: pd.DataFrame | None, stats: pd.DataFrame) -> pd.DataFrame:
    """Per test fold, the mean per-subject difference of each primary comparison (the spread between folds)."""
    rows = []
    for r in stats[stats["family"] == PRIMARY].itertuples():
        per, _, _ = subject_differences(long, subjects, r.dataset, r.model, r.reference, r.metric)
        for fold, group in per.groupby("fold", sort=True):
            rows.append(
                {
                    "dataset": r.dataset,
                    "model": r.model,
                    "reference": r.reference,
                    "metric": r.metric,
                    "fold": int(fold),
                    "n_subjects": len(group),
                    "n_images": int(group["n_images"].sum()),
                    "mean_diff": float(group["diff"].mean()),
                }
            )
    return pd.DataFrame(rows, columns=FOLD_COLUMNS)


def lookup(stats: pd.DataFrame, dataset: str, model: str, reference: str, metric: str = "rmse") -> dict | None:
    """The stats row of one comparison as a dict, or None when it was not made."""
    hit = stats[
        (stats["dataset"] == dataset)
        & (stats["model"] == model)
        & (stats["reference"] == reference)
        & (stats["metric"] == metric)
    ]
    return None if hit.empty else hit.iloc[0].to_dict()
