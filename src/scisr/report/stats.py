"""Paired comparisons at the subject level: bootstrap CIs over subjects, Wilcoxon on subject means, Holm.

Conventions (also written into every row of stats.tsv):
- A comparison pairs two models' scores of the same test image (by image_id) on one dataset;
  the difference is `model - reference`. Pairs whose value is not finite (PSNR of an exactly
  reproduced image is +inf) are dropped from that metric and counted in `n_dropped`.
- Images are grouped by subject (from the split phase's split.tsv: tiles and slices of one
  subject form one cluster). Each subject's differences are averaged; `mean_diff` is the mean of
  these subject means (every subject weighs the same), so many tiles of one image cannot
  outvote another subject. Without a split table each image counts as its own subject
  (`subjects` column says so), which overstates confidence when images share a subject.
- 95% CI: percentile bootstrap that resamples subjects with replacement, N_BOOT resamples,
  a generator seeded by (SEED, the row's key), so a row's CI does not depend on the others.
- p-value: two-sided Wilcoxon signed-rank test on the per-subject mean differences
  (scipy.stats.wilcoxon, zero differences dropped as Wilcoxon did). Exact null distribution
  when there are at most 50 non-zero differences without ties; otherwise the normal
  approximation with tie correction (`test` column says which). All differences zero: p = 1.
- Holm's step-down correction over all tested comparisons of the same metric in the report
  (every dataset and comparison together), at ALPHA.
- Verdicts: fewer than MIN_SUBJECTS subjects -> "too few subjects to tell" (an exact two-sided
  Wilcoxon on n subjects cannot give p below 2 / 2**n: 0.0625 for n = 5, 0.031 for n = 6, so
  below 6 subjects no difference could ever reach p < 0.05, however large); otherwise
  p_holm < ALPHA -> "better" or "worse" (by the sign of mean_diff and the metric's direction),
  else "no significant difference".
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

from scisr.prepare.split import read_split_table
from scisr.report.tables import LOWER_IS_BETTER

PathLike = str | os.PathLike
N_BOOT = 10_000
SEED = 0
ALPHA = 0.05
MIN_SUBJECTS = 6
EXACT_MAX = 50
VERDICTS = ("better", "worse", "no significant difference", "too few subjects to tell")
STATS_COLUMNS = [
    "dataset", "comparison", "model", "reference", "metric", "n_subjects", "n_images", "n_dropped",
    "shared_subjects", "mean_diff", "ci_low", "ci_high", "p_value", "p_min_possible", "p_holm", "verdict",
    "difference", "subjects", "ci", "test", "correction",
]
SUBJECT_COLUMNS = ["dataset", "image_id", "subject_id", "split", "in_train"]


def subjects_from_split(split_tables: Mapping[str, PathLike]) -> pd.DataFrame:
    """Image -> subject mapping of every dataset from split.tsv files: dataset, image_id, subject_id, split, in_train.

    The subject of an image is its split group (split.tsv `group`: subjects joined because they
    must not be told apart, e.g. FITS frames of one sky field). `in_train` is True when that group
    also has images in that dataset's training split (tiles of one big image and slabs of one
    volume are split apart, so their group is shared between train and test).
    """
    frames = []
    for dataset, path in split_tables.items():
        table = read_split_table(path)
        table = table[table["split"] != "excluded"]
        train = set(table.loc[table["split"] == "train", "group"])
        frames.append(pd.DataFrame({
            "dataset": dataset, "image_id": table["id"], "subject_id": table["group"],
            "split": table["split"], "in_train": table["group"].isin(train),
        }))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="bool" if c == "in_train" else "str") for c in SUBJECT_COLUMNS})
    return pd.concat(frames, ignore_index=True)[SUBJECT_COLUMNS]


def comparisons(models: Sequence[str], datasets: Sequence[str], *, baseline: str, generic: str
                ) -> list[tuple[str, str, str, str]]:
    """The (dataset, comparison, model, reference) pairs the report tests.

    Every model against the baseline on every dataset; on a domain dataset its own models
    (named like it: domain, or `<domain>_<suffix>` such as fine-tuned ones) and `pretrained`
    against the generic model.
    """
    out = []
    for dataset in datasets:
        for model in models:
            if model != baseline:
                out.append((dataset, f"vs {baseline}", model, baseline))
        if generic not in models or dataset == generic:
            continue
        for model in models:
            if model == dataset:
                out.append((dataset, f"domain vs {generic}", model, generic))
            elif model.startswith(f"{dataset}_"):
                out.append((dataset, f"fine-tuned vs {generic}", model, generic))
            elif model == "pretrained":
                out.append((dataset, f"pretrained vs {generic}", model, generic))
    return out


def bootstrap_ci(values: np.ndarray, *, n_boot: int = N_BOOT, rng: np.random.Generator,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `values` (one value per cluster), resampling clusters."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


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


def _verdict(n_subjects: int, mean_diff: float, p_holm: float, metric: str,
             lower_is_better: Mapping[str, bool] = LOWER_IS_BETTER) -> str:
    """The verdict word of one row (see the module docstring)."""
    if n_subjects < MIN_SUBJECTS:
        return "too few subjects to tell"
    if math.isnan(p_holm) or p_holm >= ALPHA or mean_diff == 0:
        return "no significant difference"
    lower = mean_diff < 0
    return "better" if lower == lower_is_better[metric] else "worse"


def _subject_lookup(subjects: pd.DataFrame | None, dataset: str, image_ids: pd.Series) -> tuple[pd.Series, str]:
    """Subject of each image of one dataset, and how subjects were found."""
    if subjects is None or not (subjects["dataset"] == dataset).any():
        return image_ids.astype(str), "each image its own subject (no split table)"
    known = subjects[subjects["dataset"] == dataset].set_index("image_id")["subject_id"]
    found = image_ids.map(known)
    if found.isna().any():
        missing = image_ids[found.isna()].iloc[0]
        raise ValueError(f"{dataset}: scored image {missing!r} is not in the split table; "
                         "the scores and split.tsv are from different runs: rerun the score phase")
    return found.astype(str), "subjects from split.tsv"


def compare(long: pd.DataFrame, subjects: pd.DataFrame | None, dataset: str, model: str, reference: str,
            metric: str, *, n_boot: int = N_BOOT, seed: int = SEED) -> dict:
    """One paired comparison on one metric: subject counts, mean difference, bootstrap CI, Wilcoxon p."""
    sel = long[long["dataset"] == dataset]
    a = sel.loc[sel["model"] == model, ["image_id", metric]]
    b = sel.loc[sel["model"] == reference, ["image_id", metric]]
    pairs = a.merge(b, on="image_id", suffixes=("", "_ref"))
    finite = np.isfinite(pairs[metric]) & np.isfinite(pairs[f"{metric}_ref"])
    dropped = int((~finite).sum())
    pairs = pairs[finite]
    subject, how = _subject_lookup(subjects, dataset, pairs["image_id"])
    diffs = pd.Series((pairs[metric] - pairs[f"{metric}_ref"]).to_numpy(), index=subject.to_numpy())
    per_subject = diffs.groupby(level=0, sort=True).mean().to_numpy()
    shared = 0
    if subjects is not None and how.startswith("subjects"):
        in_train = subjects[(subjects["dataset"] == dataset) & subjects["in_train"]]["subject_id"]
        shared = int(pd.Series(subject.unique()).isin(set(in_train)).sum())
    key = zlib.crc32(f"{dataset}|{model}|{reference}|{metric}".encode())
    low, high = bootstrap_ci(per_subject, n_boot=n_boot, rng=np.random.default_rng([seed, key]))
    p_value, test = wilcoxon_p(per_subject)
    n = len(per_subject)
    return {
        "dataset": dataset, "model": model, "reference": reference, "metric": metric,
        "n_subjects": n, "n_images": len(pairs), "n_dropped": dropped, "shared_subjects": shared,
        "mean_diff": float(per_subject.mean()) if n else math.nan, "ci_low": low, "ci_high": high,
        "p_value": p_value, "p_min_possible": 2.0 ** (1 - n) if n else math.nan,
        "difference": f"{model} - {reference}, mean of per-subject means", "subjects": how,
        "ci": f"95% percentile bootstrap over subjects, {n_boot} resamples, seed {seed}", "test": test,
    }


def paired_stats(long: pd.DataFrame, subjects: pd.DataFrame | None = None, *, baseline: str = "bicubic",
                 generic: str = "generic", models: Sequence[str] | None = None,
                 datasets: Sequence[str] | None = None, n_boot: int = N_BOOT, seed: int = SEED,
                 metrics: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """Every comparison of `comparisons` on every metric, Holm-corrected per metric, with verdicts.

    `metrics` maps the score columns to compare to whether lower is better (default RMSE, PSNR, SSIM).
    """
    directions = dict(metrics) if metrics is not None else dict(LOWER_IS_BETTER)
    models = list(models) if models is not None else list(dict.fromkeys(long["model"]))
    datasets = list(datasets) if datasets is not None else list(dict.fromkeys(long["dataset"]))
    present = set(zip(long["model"], long["dataset"]))
    rows = []
    for dataset, kind, model, reference in comparisons(models, datasets, baseline=baseline, generic=generic):
        if (model, dataset) not in present or (reference, dataset) not in present:
            continue
        for metric in directions:
            row = compare(long, subjects, dataset, model, reference, metric, n_boot=n_boot, seed=seed)
            rows.append({"comparison": kind, **row})
    table = pd.DataFrame(rows, columns=STATS_COLUMNS)
    if table.empty:
        return table
    table["p_holm"] = np.nan
    table["correction"] = ""
    for metric in directions:
        sel = (table["metric"] == metric) & (table["n_subjects"] >= MIN_SUBJECTS)
        table.loc[sel, "p_holm"] = holm(table.loc[sel, "p_value"].to_numpy())
        table.loc[table["metric"] == metric, "correction"] = (
            f"Holm over the {int(sel.sum())} comparisons of {metric} with >= {MIN_SUBJECTS} subjects, "
            f"alpha {ALPHA}")
    table["verdict"] = [_verdict(int(r.n_subjects), r.mean_diff, r.p_holm, r.metric, directions)
                        for r in table.itertuples()]
    return table[STATS_COLUMNS]


def lookup(stats: pd.DataFrame, dataset: str, model: str, reference: str, metric: str = "rmse") -> dict | None:
    """The stats row of one comparison as a dict, or None when it was not made."""
    hit = stats[(stats["dataset"] == dataset) & (stats["model"] == model) & (stats["reference"] == reference)
                & (stats["metric"] == metric)]
    return None if hit.empty else hit.iloc[0].to_dict()
