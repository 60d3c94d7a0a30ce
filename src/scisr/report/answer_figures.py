"""The answer's figures: the forest plot of the primary comparisons, the per-subject paired plot, and the budget
curves of the paired difference to the generic model."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns

from scisr.report.figures import METRIC_LABELS, save_figure
from scisr.report.tables import LOWER_IS_BETTER

FALLBACK_COLOUR = "#444444"


class _PlainLogFormatter(matplotlib.ticker.LogFormatter):
    """Log-axis tick labels as plain numbers (0.3, 2, 3000) instead of 3e-01."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def _colour(palette: Mapping[str, tuple[float, float, float]], model: str):
    """The model's palette colour, or dark grey when the palette lacks it."""
    return palette.get(model, FALLBACK_COLOUR)


def _ordered(present: Sequence[str], order: Sequence[str]) -> list[str]:
    """The values of `present` in `order`, then any not in `order` in first-appearance order."""
    seen = list(dict.fromkeys(present))
    return [d for d in dict.fromkeys(order) if d in seen] + [d for d in seen if d not in order]


def _count(value) -> str:
    """An integer count as text, '?' when missing."""
    return "?" if value is None or pd.isna(value) else str(int(value))


def _note_figure(path: str | os.PathLike, note: str, *, title: str | None = None, size=(9.0, 2.0)) -> None:
    """A figure that only says `note` (for empty inputs)."""
    fig, ax = plt.subplots(figsize=size, layout="constrained")
    ax.text(0.5, 0.5, note, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.3")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def forest_figure(
    rows: pd.DataFrame,
    path: str | os.PathLike,
    *,
    metric: str,
    palette: Mapping[str, tuple[float, float, float]],
    datasets: Sequence[str],
) -> None:
    """Forest plot of the primary comparisons: mean difference to the reference with its 95% CI, per dataset.

    One line per comparison, grouped under a bold dataset heading; the point is coloured by model, the bar is the
    subject-level CI (none when NaN), and the text on the right gives the verdict and how many subjects improved.
    """
    title = f"Primary comparisons: {metric.upper()} difference to the reference"
    if rows is None or rows.empty:
        _note_figure(path, "no primary comparison was made", title=title)
        return
    lower = LOWER_IS_BETTER[metric]
    labels, weights, ys, lines = [], [], [], []  # lines: (y, row)
    separators = []
    y = 0
    for dataset in _ordered(rows["dataset"].tolist(), datasets):
        if y:
            separators.append(y - 0.5)
        labels.append(dataset)
        weights.append("bold")
        ys.append(y)
        y += 1
        for _, row in rows[rows["dataset"] == dataset].iterrows():
            labels.append(f"{row['model']} vs {row['reference']}")
            weights.append("normal")
            ys.append(y)
            lines.append((y, row))
            y += 1
    values = np.array([[r["mean_diff"], r["ci_low"], r["ci_high"]] for _, r in lines], dtype=float)
    finite = values[np.isfinite(values)]
    lo, hi = (min(0.0, finite.min()), max(0.0, finite.max())) if finite.size else (-1.0, 1.0)
    pad = 0.08 * (hi - lo) or 1.0
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(9.0, 0.45 * y + 1.6), layout="constrained")
        ax.axvline(0, color="0.3", linestyle="--", linewidth=1.0, zorder=1)
        for sep in separators:
            ax.axhline(sep, color="0.75", linewidth=0.8, zorder=0)
        for yi, row in lines:
            colour = _colour(palette, row["model"])
            mean, ci_low, ci_high = float(row["mean_diff"]), float(row["ci_low"]), float(row["ci_high"])
            if np.isfinite(ci_low) and np.isfinite(ci_high):
                ax.errorbar(
                    [mean],
                    [yi],
                    xerr=[[mean - ci_low], [ci_high - mean]],
                    fmt="none",
                    ecolor=colour,
                    elinewidth=1.8,
                    capsize=3,
                    zorder=2,
                )
            if np.isfinite(mean):
                ax.plot([mean], [yi], marker="o", markersize=7, color=colour, linestyle="none", zorder=3)
            ax.text(
                1.02,
                yi,
                f"{row['verdict']} · {_count(row['n_improved'])}/{_count(row['n_subjects'])} improved",
                transform=ax.get_yaxis_transform(),
                ha="left",
                va="center",
                fontsize=8.5,
                clip_on=False,
            )
        ax.set_yticks(ys, labels)
        for tick, weight in zip(ax.get_yticklabels(), weights):
            tick.set_fontweight(weight)
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="y", visible=False)
        ax.set_ylim(y - 0.5, -0.5)  # first line on top
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_xlabel(f"\u0394{metric.upper()} (model \u2212 reference), mean over subjects, 95% CI")
        ax.text(
            0.0 if lower else 1.0,
            1.01,
            "\u2190 better" if lower else "better \u2192",
            transform=ax.transAxes,
            ha="left" if lower else "right",
            va="bottom",
            fontsize=9,
            fontweight="bold",
            color="0.25",
        )
        fig.suptitle(title, fontsize=11)
    save_figure(fig, path)


def paired_subjects_figure(
    per_subject: pd.DataFrame,
    path: str | os.PathLike,
    *,
    metric: str,
    reference: str,
    palette: Mapping[str, tuple[float, float, float]],
    datasets: Sequence[str],
) -> None:
    """Each subject's mean score per model, one panel per dataset, a grey line joining one subject's models."""
    title = f"Per-subject {metric.upper()}: each grey line joins one subject's scores across models"
    if per_subject is None or per_subject.empty:
        _note_figure(path, "no per-subject scores to show", title=title)
        return
    shown = _ordered(per_subject["dataset"].tolist(), datasets)
    ncols = min(len(shown), 4)
    nrows = -(-len(shown) // ncols)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(3.2 * ncols + 0.6, 3.4 * nrows), layout="constrained", squeeze=False
        )
        for i, dataset in enumerate(shown):
            ax = axes[i // ncols, i % ncols]
            sel = per_subject[per_subject["dataset"] == dataset]
            present = list(dict.fromkeys(sel["model"]))
            models = [reference] * (reference in present) + [m for m in present if m != reference]
            wide = sel.pivot_table(index="subject_id", columns="model", values="value", aggfunc="mean")
            wide = wide.reindex(columns=models)
            x = np.arange(len(models))
            for _, values in wide.iterrows():
                keep = np.isfinite(values.to_numpy(dtype=float))
                ax.plot(x[keep], values.to_numpy(dtype=float)[keep], color="0.6", linewidth=0.8, alpha=0.7, zorder=1)
            for j, model in enumerate(models):
                column = wide[model].dropna()
                ax.scatter(
                    np.full(len(column), j),
                    column,
                    color=_colour(palette, model),
                    s=22,
                    zorder=2,
                    edgecolors="white",
                    linewidths=0.4,
                )
            ax.set_xticks(x, models, rotation=30 if len(models) > 2 else 0, ha="right" if len(models) > 2 else "center")
            ax.set_xlim(-0.5, len(models) - 0.5)
            ax.set_title(f"{dataset}: {sel['subject_id'].nunique()} subjects", fontsize=10)
            ax.set_xlabel("")
            ax.grid(axis="x", visible=False)
            if i % ncols == 0:
                ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        for j in range(len(shown), nrows * ncols):
            axes[j // ncols, j % ncols].set_axis_off()
        fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def budget_figure(
    diffs: pd.DataFrame,
    path: str | os.PathLike,
    *,
    dataset: str,
    models: Sequence[str],
    palette: Mapping[str, tuple[float, float, float]],
    statement: str,
    metric: str = "rmse",
) -> None:
    """Paired difference to the reference (mean over subjects, 95% CI) against training budget, per model.

    Left: training iterations; right: the model's cumulative device-hours (CPU- or GPU-hours); both log scale.
    Models are dodged slightly along x so their CIs do not overlap; `statement` (the crossover) is the title.
    """
    needed = {"dataset", "metric", "model"}
    sel = (
        diffs[(diffs["dataset"] == dataset) & (diffs["metric"] == metric)]
        if needed <= set(diffs.columns)
        else pd.DataFrame(columns=[*needed])
    )
    plotted = [m for m in dict.fromkeys(models) if (sel["model"] == m).any()]
    lower = LOWER_IS_BETTER[metric]
    title = (
        textwrap.fill(statement.strip(), 150)
        if statement and statement.strip()
        else f"{dataset}: {metric.upper()} difference to the reference at each training budget"
    )
    references = list(dict.fromkeys(sel["reference"])) if "reference" in sel.columns else []
    reference = " / ".join(map(str, references)) or "reference"
    units = sorted(set(sel["device_hours_unit"].dropna())) if "device_hours_unit" in sel.columns else []
    units = units or ["device-hours"]
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2), layout="constrained", sharey=True)
        panels = (
            (axes[0], "iteration", "training iterations (log)"),
            (axes[1], "device_hours", f"model's cumulative training cost, {' / '.join(units)} (log)"),
        )
        for ax, column, label in panels:
            for k, model in enumerate(plotted):
                rows = sel[sel["model"] == model].sort_values(column)
                x = rows[column].to_numpy(dtype=float) * 1.04 ** (k - (len(plotted) - 1) / 2)
                y = rows["mean_diff"].to_numpy(dtype=float)
                low, high = rows["ci_low"].to_numpy(dtype=float), rows["ci_high"].to_numpy(dtype=float)
                on_axis = np.isfinite(x) & (x > 0)
                colour = _colour(palette, model)
                ax.plot(
                    x[on_axis], y[on_axis], color=colour, marker="o", markersize=5, linewidth=1.5, label=model, zorder=3
                )
                ci = on_axis & np.isfinite(y) & np.isfinite(low) & np.isfinite(high)
                if ci.any():
                    ax.errorbar(
                        x[ci],
                        y[ci],
                        yerr=np.vstack([y[ci] - low[ci], high[ci] - y[ci]]),
                        fmt="none",
                        ecolor=colour,
                        elinewidth=1.2,
                        capsize=3,
                        zorder=2,
                    )
            ax.axhline(0, color="0.3", linestyle="--", linewidth=1.0, zorder=1)
            if plotted:
                ax.set_xscale("log")
                ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(_PlainLogFormatter(labelOnlyBase=False))
                ax.tick_params(axis="x", which="minor", labelsize=7)
            else:
                ax.text(
                    0.5,
                    0.5,
                    f"no budget snapshots for {dataset} ({metric})",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    color="0.3",
                )
                ax.set_xticks([])
                ax.set_yticks([])
            ax.set_xlabel(label)
        better = "below 0 = model better" if lower else "above 0 = model better"
        axes[0].set_ylabel(
            f"\u0394{metric.upper()} (model \u2212 {reference})\nmean over subjects, 95% CI; {better}", fontsize=9
        )
        axes[1].text(
            0.99,
            0.02 if lower else 0.98,
            "\u2193 better" if lower else "\u2191 better",
            transform=axes[1].transAxes,
            ha="right",
            va="bottom" if lower else "top",
            fontsize=9,
            fontweight="bold",
            color="0.25",
        )
        if plotted:
            handles = [
                plt.Line2D([], [], color=_colour(palette, m), marker="o", markersize=4, label=m) for m in plotted
            ]
            handles.append(plt.Line2D([], [], color="0.3", linestyle="--", label=f"{reference} (zero difference)"))
            fig.legend(handles=handles, title="model", fontsize=8, loc="outside right center", frameon=False)
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)
