"""HTML sections of the report for the field metrics, the budget crossover and the cost tables (strings only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import pandas as pd

from scisr.report import field as fieldmod
from scisr.report.html import VERDICT_CSS, data_uri, duration, fmt, pvalue


def _table(heads: Sequence[str], rows: Sequence[Sequence[str]], stacked: int | None = None) -> str:
    """An HTML table of already escaped cells; cells from column `stacked` on may wrap onto several lines."""

    def cell(i: int, c: str) -> str:
        return f'<td class="stack">{c}</td>' if stacked is not None and i >= stacked else f"<td>{c}</td>"

    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in heads) + "</tr>"]
    out += ["<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in rows]
    return "\n".join([*out, "</table>"])


def _digits(metric: str) -> int:
    return 2 if metric.startswith("psnr") else 4


def field_section(long: pd.DataFrame, fstats: pd.DataFrame, fields: Mapping[str, str], models: Sequence[str]) -> str:
    """Per field dataset: conventions, mean \u00b1 sd of each field metric per model, and the paired comparisons."""
    parts = ["<h2>Field metrics</h2>"]
    for dataset, field in fields.items():
        summary = fieldmod.field_summary(long, dataset, field, models)
        if summary.empty:
            continue
        parts.append(f"<h3>{escape(dataset)} ({escape(field)})</h3>")
        parts.append(f'<p class="note">{escape(fieldmod.conventions(field))}</p>')
        shown = fieldmod.SHOWN[field]
        rows = []
        for _, row in summary.iterrows():
            cells = [escape(str(row["model"])), str(int(row["n"]))]
            for metric in shown:
                signed = metric in ("total_flux_rel_err", "aperture_flux_bias")
                cells.append(
                    escape(
                        f"{fmt(row[f'{metric}_mean'], _digits(metric), signed=signed)} \u00b1 "
                        f"{fmt(row[f'{metric}_std'], _digits(metric))}"
                    )
                )
            rows.append(cells)
        parts.append(_table(["model", "n", *(fieldmod.LABELS[m] for m in shown)], rows))
        sel = fstats[fstats["dataset"] == dataset] if not fstats.empty else fstats
        if sel.empty:
            continue
        metrics = list(fieldmod.DIRECTIONS[field])
        rows = []
        for (kind, model, reference), group in sel.groupby(["comparison", "model", "reference"], sort=False):
            by_metric = group.set_index("metric")
            first = by_metric.iloc[0]
            cells = [escape(str(kind)), escape(str(model)), escape(str(reference)), str(int(first["n_subjects"]))]
            for metric in metrics:
                if metric not in by_metric.index:
                    cells.append("\u2013")
                    continue
                r = by_metric.loc[metric]
                d = _digits(metric)
                ci = f"[{fmt(r['ci_low'], d, signed=True)}, {fmt(r['ci_high'], d, signed=True)}]"
                css = VERDICT_CSS.get(str(r["verdict"]), "")
                cells.append(
                    f"{escape(fmt(r['mean_diff'], d, signed=True))}<br>{escape(ci)}<br>"
                    f'<span class="{css}">{escape(str(r["verdict"]))}</span>'
                )
            rows.append(cells)
        parts.append(
            '<p class="note">Paired differences (model \u2212 reference), mean of per-subject means with '
            "the 95% bootstrap CI over subjects and the verdict (Wilcoxon on subject means, Holm over the "
            "comparisons of each field metric), as in the Statistics section; rows in field_stats.tsv.</p>"
        )
        parts.append(
            _table(
                ["comparison", "model", "reference", "subjects", *(f"\u0394 {fieldmod.LABELS[m]}" for m in metrics)],
                rows,
                stacked=4,
            )
        )
    return "\n".join(parts) if len(parts) > 1 else ""


def budget_section(statements: Sequence[str], figures: Sequence[tuple[str, str, bytes]], note: str) -> str:
    """The budget crossover: one statement per domain, the conventions, and the per-domain figures."""
    if not statements and not figures:
        return ""
    parts = ["<h2>Training budget</h2>", '<ul class="answers">']
    parts += [f"<li>{escape(s)}</li>" for s in statements]
    parts += ["</ul>", f'<p class="note">{escape(note)}</p>']
    for heading, caption, png in figures:
        parts += [
            "<figure>",
            f"<h3>{escape(heading)}</h3>",
            f'<img src="{data_uri(png)}" alt="{escape(heading)}">',
            f"<figcaption>{escape(caption)}</figcaption>",
            "</figure>",
        ]
    return "\n".join(parts)


def costs_section(training: pd.DataFrame, inference: pd.DataFrame, note: str) -> str:
    """Training cost per model and stage, and inference cost per model and test set."""
    if training.empty and inference.empty:
        return ""
    parts = ["<h2>Costs</h2>", f'<p class="note">{escape(note)}</p>']
    if not training.empty:
        rows, devices = [], []
        units = sorted(set(training["device_hours_unit"]))
        runs = training[(training["stage"] == "total") & (training["fold"] != "all")].groupby("model").size()
        # a model with several runs (one per fold) shows their sum; costs.tsv has each run
        shown = training[(training["fold"] == "all") | training["model"].map(runs).eq(1)]
        for _, r in shown.iterrows():
            total = r["stage"] == "total"
            hours = f"{r['device_hours']:.3g}" + ("" if len(units) == 1 else f" {r['device_hours_unit']}")
            name = str(r["model"]) + (f" ({int(runs[r['model']])} runs)" if runs[r["model"]] > 1 else "")
            cells = [
                name if total else "",
                f"{int(r['parameters']):,}".replace(",", "\u2009") if total else "",
                str(r["stage"]),
                f"{int(r['iterations']):,}".replace(",", "\u2009"),
                duration(r["seconds"]),
                hours,
                fmt(r["iterations_per_s"], 2),
                fmt(r["patches_per_s"], 1),
                duration(r["cumulative_seconds"]) if total else "",
                duration(r["job_seconds"]) if total else "",
                fmt(r["max_rss_mb"], 0) if total else "",
            ]
            rows.append([escape(c) for c in cells])
            if total:
                devices.append(
                    f"{r['model']}: {r['device_name'] or r['device']} ({r['device']}, "
                    f"{int(r['threads'])} thread(s)" + (f", {int(r['gpus'])} processes)" if int(r["gpus"]) > 1 else ")")
                )
        parts.append("<h3>Training</h3>")
        parts.append(
            _table(
                [
                    "model",
                    "parameters",
                    "stage",
                    "iterations",
                    "wall time",
                    units[0] if len(units) == 1 else "device-hours",
                    "it/s",
                    "patches/s",
                    "cumulative (with init)",
                    "job wall time (benchmark)",
                    "peak RSS MB",
                ],
                rows,
            )
        )
        parts.append(f'<p class="note">Trained on: {escape("; ".join(devices))}.</p>')
    if not inference.empty:
        rows = []
        for _, r in inference.iterrows():
            rows.append(
                [
                    escape(c)
                    for c in (
                        str(r["model"]),
                        str(r["dataset"]),
                        str(int(r["images"])),
                        fmt(r["megapixels"], 3),
                        duration(r["seconds"]),
                        fmt(r["s_per_megapixel"], 2),
                        fmt(r["max_rss_mb"], 0),
                    )
                ]
            )
        parts.append("<h3>Inference</h3>")
        parts.append(
            _table(["model", "test set", "images", "megapixels", "job wall time", "s / megapixel", "peak RSS MB"], rows)
        )
    return "\n".join(parts)


def plan_section(items: Sequence[str], cannot: Sequence[str]) -> str:
    """The declared statistical plan, before any result; and what this study's design cannot show."""
    parts = [
        "<h2>Statistical plan</h2>",
        '<p class="note">Declared by the configuration before any result: the comparisons, their family '
        "and correction, the unit of analysis and the test.</p>",
        '<ul class="plan">',
    ]
    parts += [f"<li>{escape(item)}</li>" for item in items]
    parts.append("</ul>")
    if cannot:
        parts.append(
            '<p class="few"><b>What this study cannot show:</b> ' + " ".join(escape(c) for c in cannot) + "</p>"
        )
    return "\n".join(parts)


def _training_cost(costs: pd.DataFrame | None, model: str) -> str:
    """'3 min 05 s, 0.17 CPU-hours (5 runs)' from the cost table's total rows; '' when unknown."""
    if costs is None or costs.empty:
        return ""
    rows = costs[(costs["model"] == model) & (costs["stage"] == "total")]
    if rows.empty:
        return ""
    runs = int((rows["fold"] != "all").sum())
    row = rows[rows["fold"] == "all"].iloc[0] if runs > 1 else rows.iloc[0]
    text = f"{duration(row['seconds'])}, {row['device_hours']:.3g} {row['device_hours_unit']}"
    return text + (f" ({runs} runs)" if runs > 1 else "")


def answer_section(
    primary: pd.DataFrame,
    datasets: Sequence[str],
    *,
    metric: str,
    costs: pd.DataFrame | None,
    imported: Sequence[str],
    figures: Sequence[tuple[str, str, bytes]],
) -> str:
    """The answer first: per domain, each primary comparison's difference, CI, subjects improved, verdict and
    training cost; then the forest plot and the per-subject paired plot."""
    parts = ["<h2>Answer</h2>"]
    if primary.empty:
        parts.append(
            "<p>No primary comparison was made: no domain dataset has its own, fine-tuned or imported "
            "model scored beside the generic model.</p>"
        )
    digits = 2 if metric == "psnr" else 4
    name = {"rmse": "RMSE", "psnr": "PSNR dB", "ssim": "SSIM"}.get(metric, metric)
    for dataset in datasets:
        sel = primary[primary["dataset"] == dataset]
        if sel.empty:
            continue
        parts.append(f"<h3>{escape(dataset)}</h3>")
        rows = []
        for r in sel.itertuples():
            ci = (
                f"{fmt(r.mean_diff, digits, signed=True)} [{fmt(r.ci_low, digits, signed=True)}, "
                f"{fmt(r.ci_high, digits, signed=True)}]"
            )
            cost = "imported: not trained here" if r.model in imported else _training_cost(costs, r.model)
            css = VERDICT_CSS.get(str(r.verdict), "")
            rows.append(
                [
                    escape(str(r.model)),
                    escape(ci),
                    escape(fmt(r.median_diff, digits, signed=True)),
                    escape(f"{int(r.n_improved)} of {int(r.n_subjects)}"),
                    escape(pvalue(r.p_holm)),
                    f'<span class="{css}">{escape(str(r.verdict))}</span>',
                    escape(cost),
                ]
            )
        parts.append(
            _table(
                [
                    "model",
                    f"\u0394{name} vs {sel['reference'].iloc[0]} [95% CI]",
                    "median \u0394",
                    "subjects improved",
                    "Holm p (primary)",
                    "verdict",
                    "training cost",
                ],
                rows,
                stacked=5,
            )
        )
    for heading, caption, png in figures:
        parts += [
            "<figure>",
            f"<h3>{escape(heading)}</h3>",
            f'<img src="{data_uri(png)}" alt="{escape(heading)}">',
            f"<figcaption>{escape(caption)}</figcaption>",
            "</figure>",
        ]
    return "\n".join(parts)


def folds_section(folds: pd.DataFrame, k: int, *, metric: str) -> str:
    """Cross-validation: each primary comparison's mean per-subject difference in each test fold, and its spread."""
    if folds.empty or k <= 1:
        return ""
    digits = 2 if metric == "psnr" else 4
    parts = [
        "<h2>Cross-validation folds</h2>",
        f'<p class="note">{k}-fold cross-validation over subjects. Mean per-subject difference (model '
        "\u2212 reference) of each primary comparison within each test fold (subjects in brackets), and the "
        "spread between folds (largest \u2212 smallest); all rows in folds.tsv.</p>",
    ]
    heads = ["dataset", "model", "reference", *(f"fold {f}" for f in range(1, k + 1)), "spread"]
    rows = []
    for (dataset, model, reference), group in folds.groupby(["dataset", "model", "reference"], sort=False):
        by_fold = group.set_index("fold")
        cells = [escape(str(dataset)), escape(str(model)), escape(str(reference))]
        for fold in range(1, k + 1):
            if fold in by_fold.index:
                r = by_fold.loc[fold]
                cells.append(escape(f"{fmt(r['mean_diff'], digits, signed=True)} ({int(r['n_subjects'])})"))
            else:
                cells.append("\u2013")
        spread = group["mean_diff"].max() - group["mean_diff"].min()
        cells.append(escape(fmt(spread, digits)))
        rows.append(cells)
    parts.append(_table(heads, rows))
    return "\n".join(parts)
