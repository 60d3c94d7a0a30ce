"""Field metrics in the report: the score phase's field tables (scisr.metrics_field) per dataset, their summary and
their subject-level statistics (the same paired comparisons, bootstrap CIs, Wilcoxon and Holm as stats.tsv)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scisr.metrics_field import APERTURE_RADIUS, N_SOURCES, read_field_table
from scisr.report import stats
from scisr.report.tables import by_fold

PathLike = str | os.PathLike
# metric -> lower is better; total_flux_abs_err = |total_flux_rel_err| (a flux error either way is an error)
DIRECTIONS: dict[str, dict[str, bool]] = {
    "mri": {"rmse_fg": True, "psnr_fg": False, "ssim_fg": False},
    "astronomy": {"rmse_phys": True, "psnr_phys": False, "total_flux_abs_err": True, "aperture_flux_rel_err": True},
}
LABELS = {
    "fg_fraction": "head fraction",
    "rmse_fg": "RMSE in head",
    "psnr_fg": "PSNR in head (dB)",
    "ssim_fg": "SSIM in head",
    "rmse_phys": "RMSE (physical)",
    "psnr_phys": "PSNR (physical, dB)",
    "total_flux_rel_err": "total flux rel. error",
    "total_flux_abs_err": "|total flux rel. error|",
    "aperture_flux_rel_err": "aperture flux |rel. error|",
    "aperture_flux_bias": "aperture flux bias",
    "n_sources": "sources",
}
SHOWN = {
    "mri": ["fg_fraction", "rmse_fg", "psnr_fg", "ssim_fg"],
    "astronomy": ["rmse_phys", "psnr_phys", "total_flux_rel_err", "aperture_flux_rel_err", "aperture_flux_bias"],
}


def conventions(field: str) -> str:
    """How the field's metrics are computed, for the page (scisr.metrics_field has the details)."""
    if field == "mri":
        return (
            "MRI: scores inside a foreground (head) mask computed on HR after the border crop (Otsu threshold, "
            "closing, hole filling, largest component), data_range 1; SSIM is the mean of the SSIM map inside "
            "the mask. Head fraction: the mask's share of the cropped image."
        )
    return (
        "Astronomy: HR and prediction mapped back to the extracted frame's physical units by inverting the "
        "recorded normalization (the asinh stretch is a display transform); PSNR's data range is the "
        "normalization's high \u2212 low value. Fluxes are above the sky (median of HR): total flux relative "
        f"error (prediction \u2212 HR) / |HR|; aperture photometry of the {N_SOURCES} brightest isolated HR "
        f"sources in {APERTURE_RADIUS}-px circles: mean |relative error| and mean signed bias. Pixels above the "
        "normalization's high percentile were clipped before the split, in HR and prediction alike."
    )


def read_field_scores(
    field_scores: Mapping[str, Mapping[str, Mapping[int, PathLike] | PathLike]], fields: Mapping[str, str]
) -> pd.DataFrame:
    """Every field table ({dataset: {model: {fold: TSV}}}) as one long frame: model, dataset, fold, image_id and
    the metric columns (NaN where n/a)."""
    frames = []
    for dataset, by_model in field_scores.items():
        for model, tree in by_model.items():
            for fold, path in by_fold(tree).items():
                table = read_field_table(path, fields[dataset])
                if "total_flux_rel_err" in table:
                    table = table.assign(total_flux_abs_err=table["total_flux_rel_err"].abs())
                frames.append(table.assign(model=model, dataset=dataset, fold=int(fold)))
    if not frames:
        return pd.DataFrame(columns=["model", "dataset", "fold", "image_id"])
    return pd.concat(frames, ignore_index=True)


def field_stats(
    long: pd.DataFrame,
    fields: Mapping[str, str],
    subjects: pd.DataFrame | None,
    *,
    models: Sequence[str],
    baseline: str,
    generic: str,
    imported: Sequence[str] = ("pretrained",),
) -> pd.DataFrame:
    """Paired subject-level comparisons (stats.paired_stats) on each field dataset's metrics, with a `field` column;
    all secondary (the primary family is the main metrics')."""
    frames = []
    for field in sorted(set(fields.values())):
        datasets = [d for d, f in fields.items() if f == field]
        sel = long[long["dataset"].isin(datasets)]
        if sel.empty:
            continue
        table = stats.paired_stats(
            sel,
            subjects,
            baseline=baseline,
            generic=generic,
            models=models,
            datasets=datasets,
            metrics=DIRECTIONS[field],
            primary_metric=None,
            imported=imported,
        )
        frames.append(table.assign(field=field))
    if not frames:
        return pd.DataFrame(columns=["field", *stats.STATS_COLUMNS])
    out = pd.concat(frames, ignore_index=True)
    return out[["field", *stats.STATS_COLUMNS]]


def field_summary(long: pd.DataFrame, dataset: str, field: str, models: Sequence[str]) -> pd.DataFrame:
    """Mean and sample sd over test images of each shown metric, one row per model (models in order)."""
    rows = []
    for model in models:
        sel = long[(long["dataset"] == dataset) & (long["model"] == model)]
        if sel.empty:
            continue
        row = {"model": model, "n": len(sel)}
        for metric in SHOWN[field]:
            values = sel[metric].to_numpy(dtype=np.float64)
            values = values[np.isfinite(values)]
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else np.nan
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
