"""HTML sections of the report for the field metrics, the budget crossover and the cost tables (strings only)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import pandas as pd

from scisr.report import field as fieldmod
from scisr.report.html import VERDICT_CSS, data_uri, duration, fmt


def _table(heads: Sequence[str], rows: Sequence[Sequence[str]], stacked: int | None = None) -> str:
    """An HTML table of already escaped cells; cells from column `stacked` on may wrap onto several lines."""
    def cell(i: int, c: str) -> str:
        return f'<td class="stack">{c}</td>' if stacked is not None and i >= stacked else f"<td>{c}</td>"

    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in heads) + "</tr>"]
    out += ["<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in rows]
    return "\n".join(out + ["</table>"])


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
                cells.append(escape(f"{fmt(row[f'{metric}_mean'], _digits(metric), signed=signed)} \u00b1 "
                                    f"{fmt(row[f'{metric}_std'], _digits(metric))}"))
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
                cells.append(f"{escape(fmt(r['mean_diff'], d, signed=True))}<br>{escape(ci)}<br>"
                             f'<span class="{css}">{escape(str(r["verdict"]))}</span>')
            rows.append(cells)
        parts.append('<p class="note">Paired differences (model \u2212 reference), mean of per-subject means with '
                     "the 95% bootstrap CI over subjects and the verdict (Wilcoxon on subject means, Holm over the "
                     "comparisons of each field metric), as in the Statistics section; rows in field_stats.tsv.</p>")
        parts.append(_table(["comparison", "model", "reference", "subjects",
                             *(f"\u0394 {fieldmod.LABELS[m]}" for m in metrics)], rows, stacked=4))
    return "\n".join(parts) if len(parts) > 1 else ""


def budget_section(statements: Sequence[str], figures: Sequence[tuple[str, str, bytes]], note: str) -> str:
    """The budget crossover: one statement per domain, the conventions, and the per-domain figures."""
    if not statements and not figures:
        return ""
    parts = ["<h2>Training budget</h2>", '<ul class="answers">']
    parts += [f"<li>{escape(s)}</li>" for s in statements]
    parts += ["</ul>", f'<p class="note">{escape(note)}</p>']
    for heading, caption, png in figures:
        parts += ["<figure>", f"<h3>{escape(heading)}</h3>", f'<img src="{data_uri(png)}" alt="{escape(heading)}">',
                  f"<figcaption>{escape(caption)}</figcaption>", "</figure>"]
    return "\n".join(parts)


def costs_section(training: pd.DataFrame, inference: pd.DataFrame, note: str) -> str:
    """Training cost per model and stage, and inference cost per model and test set."""
    if training.empty and inference.empty:
        return ""
    parts = ["<h2>Costs</h2>", f'<p class="note">{escape(note)}</p>']
    if not training.empty:
        rows, devices = [], []
        units = sorted(set(training["device_hours_unit"]))
        for _, r in training.iterrows():
            total = r["stage"] == "total"
            hours = f"{r['device_hours']:.3g}" + ("" if len(units) == 1 else f" {r['device_hours_unit']}")
            cells = [str(r["model"]) if total else "", f"{int(r['parameters']):,}".replace(",", "\u2009") if total
                     else "", str(r["stage"]), f"{int(r['iterations']):,}".replace(",", "\u2009"),
                     duration(r["seconds"]), hours, fmt(r["iterations_per_s"], 2), fmt(r["patches_per_s"], 1),
                     duration(r["cumulative_seconds"]) if total else "", duration(r["job_seconds"]) if total else "",
                     fmt(r["max_rss_mb"], 0) if total else ""]
            rows.append([escape(c) for c in cells])
            if total:
                devices.append(f"{r['model']}: {r['device_name'] or r['device']} ({r['device']}, "
                               f"{int(r['threads'])} thread(s)" + (f", {int(r['gpus'])} processes)"
                                                                    if int(r["gpus"]) > 1 else ")"))
        parts.append("<h3>Training</h3>")
        parts.append(_table(["model", "parameters", "stage", "iterations", "wall time",
                             units[0] if len(units) == 1 else "device-hours", "it/s", "patches/s",
                             "cumulative (with init)", "job wall time (benchmark)", "peak RSS MB"], rows))
        parts.append(f'<p class="note">Trained on: {escape("; ".join(devices))}.</p>')
    if not inference.empty:
        rows = []
        for _, r in inference.iterrows():
            rows.append([escape(c) for c in (str(r["model"]), str(r["dataset"]), str(int(r["images"])),
                                             fmt(r["megapixels"], 3), duration(r["seconds"]),
                                             fmt(r["s_per_megapixel"], 2), fmt(r["max_rss_mb"], 0))])
        parts.append("<h3>Inference</h3>")
        parts.append(_table(["model", "test set", "images", "megapixels", "job wall time", "s / megapixel",
                             "peak RSS MB"], rows))
    return "\n".join(parts)
