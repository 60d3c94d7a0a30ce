"""Self-contained HTML for the report: strings only, every text escaped, figures as data URIs."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import pandas as pd

from scisr.report.meaning import Advice, Answer
from scisr.report.text import number

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.88em; max-width: 100%; }
th, td { padding: 0.25em 0.45em; border-bottom: 1px solid #e3e3e3; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; white-space: normal; vertical-align: bottom; }
td.stack, td.wrap { white-space: normal; line-height: 1.25; }
td.stack { min-width: 6em; }
td:first-child, th:first-child { text-align: left; }
ul.answers li { margin-bottom: 0.4em; }
ul.plan li { margin-bottom: 0.3em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.note { font-size: 0.88em; color: #555; }
.worse { color: #a33; } .better { color: #264; } .few { color: #7a5a00; }
ul.meaning li { margin-bottom: 0.6em; }
ul.caveats { font-size: 0.9em; color: #444; margin-top: 0.2em; }
"""

MINUS = "\u2212"
VERDICT_CSS = {"better": "better", "worse": "worse", "too few subjects to tell": "few"}


fmt = number  # the report's one number format (scisr.report.text.number)


def data_uri(png: bytes) -> str:
    """A PNG as a base64 data URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def stats_table(stats: pd.DataFrame, dataset: str) -> str:
    """One dataset's paired comparisons (RMSE and PSNR) with their family, subject counts, CIs, effect sizes,
    p-values and verdicts; cells wrap so the table fits a 1200-px page."""
    sel = stats[stats["dataset"] == dataset]
    heads = [
        "comparison (family)",
        "model",
        "ref.",
        "subjects (images)",
        "\u0394RMSE [95% CI]",
        "median",
        "improved",
        "p",
        "Holm p",
        "RMSE verdict",
        "\u0394PSNR dB [95% CI]",
        "Holm p",
        "PSNR verdict",
    ]
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in heads) + "</tr>"]
    for (kind, model, reference), group in sel.groupby(["comparison", "model", "reference"], sort=False):
        by_metric = group.set_index("metric")
        rmse = by_metric.loc["rmse"] if "rmse" in by_metric.index else None
        if rmse is None:
            continue
        family = "primary" if rmse.get("family") == "primary" else "secondary"
        cells = [
            (f"{escape(str(kind))} ({family})", True),
            (escape(str(model)), False),
            (escape(str(reference)), False),
            (f"{int(rmse['n_subjects'])} ({int(rmse['n_images'])})", False),
        ]
        for metric, digits, extra in (("rmse", 4, True), ("psnr", 2, False)):
            if metric not in by_metric.index:
                cells += [("\u2013", False)] * (6 if extra else 3)
                continue
            row = by_metric.loc[metric]
            ci = (
                f"{fmt(row['mean_diff'], digits, signed=True)} [{fmt(row['ci_low'], digits, signed=True)}, "
                f"{fmt(row['ci_high'], digits, signed=True)}]"
            )
            cells.append((escape(ci), True))
            if extra:
                cells.append((escape(fmt(row.get("median_diff"), digits, signed=True)), False))
                improved = row.get("n_improved")
                cells.append(
                    (escape("\u2013" if _missing(improved) else f"{int(improved)}/{int(row['n_subjects'])}"), False)
                )
                cells.append((escape(pvalue(row["p_value"])), False))
            cells.append((escape(pvalue(row["p_holm"])), False))
            css = VERDICT_CSS.get(str(row["verdict"]), "")
            cells.append((f'<span class="{css}">{escape(str(row["verdict"]))}</span>', True))
        out.append(
            "<tr>" + "".join(f'<td class="wrap">{c}</td>' if wrap else f"<td>{c}</td>" for c, wrap in cells) + "</tr>"
        )
    out.append("</table>")
    return "\n".join(out)


def pvalue(value: Any) -> str:
    """A p-value with three significant digits, '<0.001', or an en dash."""
    if _missing(value):
        return "\u2013"
    return "<0.001" if value < 0.001 else f"{value:.3g}"


def summary_table(
    summary: pd.DataFrame, dataset: str, best: Mapping[tuple[str, str], set[str]], *, baseline: str, generic: str
) -> str:
    """The summary rows of one dataset as an HTML table, best mean per metric in bold."""
    sel = summary[summary["dataset"] == dataset]
    heads = [
        "model",
        "n",
        "RMSE",
        "PSNR (dB)",
        "SSIM",
        f"\u0394RMSE vs {baseline}",
        f"\u0394PSNR vs {baseline}",
        f"\u0394SSIM vs {baseline}",
        f"\u0394RMSE vs {generic}",
        f"\u0394PSNR vs {generic}",
        f"wins vs {baseline}",
    ]
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in heads) + "</tr>"]
    for _, row in sel.iterrows():
        model = str(row["model"])
        cells = [escape(model), str(int(row["n"]))]
        for metric, digits in (("rmse", 4), ("psnr", 2), ("ssim", 4)):
            text = f"{fmt(row[f'{metric}_mean'], digits)} \u00b1 {fmt(row[f'{metric}_std'], digits)}"
            if metric == "psnr" and int(row.get("n_psnr_inf", 0)):
                text += f" [{int(row['n_psnr_inf'])}\u00d7\u221e excluded]"
            text = escape(text)
            if model in best.get((dataset, metric), set()):
                text = f"<b>{text}</b>"
            cells.append(text)
        for col, digits in (
            ("d_rmse_vs_bicubic", 4),
            ("d_psnr_vs_bicubic", 2),
            ("d_ssim_vs_bicubic", 4),
            ("d_rmse_vs_generic", 4),
            ("d_psnr_vs_generic", 2),
        ):
            cells.append(escape(fmt(row[col], digits, signed=True)))
        wins = row["wins_vs_bicubic"]
        cells.append(escape("\u2013" if math.isnan(wins) else f"{100 * wins:.0f}%"))
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def duration(seconds: Any) -> str:
    """Seconds as '1 h 02 min', '3 min 05 s' or '12.3 s'."""
    try:
        s = float(seconds)
    except (TypeError, ValueError):
        return "\u2013"
    if math.isnan(s):
        return "\u2013"
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    if s >= 60:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{s:.1f} s"


def _missing(value: Any) -> bool:
    """True for None and NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: Any) -> str:
    """A card value as text, an en dash when missing."""
    return "\u2013" if _missing(value) else str(value)


def _integer(value: Any) -> str:
    """An integer with thin-space thousands separators, or the value as text."""
    if _missing(value):
        return "\u2013"
    try:
        return f"{int(value):,}".replace(",", "\u2009")
    except (TypeError, ValueError):
        return str(value)


def stage_cost(iterations: Mapping[str, int], wall_seconds: Mapping[str, float]) -> str:
    """Per-stage cost as 'pixel 1200 it / 61 s; gan 100 it / 15 s' (stages with no iterations left out)."""
    parts = []
    for stage, count in iterations.items():
        if count:
            parts.append(f"{stage} {_integer(count)} it / {duration(wall_seconds.get(stage))}")
    return "; ".join(parts) or "\u2013"


def _device(row: Mapping[str, Any]) -> str:
    """'AMD EPYC 7B13 (cpu, 2 threads)' or 'NVIDIA H100 (cuda, 8 threads, 2 processes)'."""
    threads, gpus = int(row["threads"]), int(row["gpus"])
    bits = [_text(row["device"] or None), f"{threads} thread{'s' if threads != 1 else ''}"]
    if gpus > 1:
        bits.append(f"{gpus} processes")
    name = _text(row["device_name"] or row["device"] or None)
    return f"{name} ({', '.join(bits)})"


def cost_table(cost: pd.DataFrame) -> str:
    """The training-cost table from model cards: source, per-stage iterations and wall time, totals, size, device.

    An imported model has no training cost here: its row says where the weights came from. A fine-tuned model's
    cost is its own training only; its init model's cost is in that model's row.
    """
    heads = ["model", "source", "architecture", "parameters", "iterations / wall time per stage", "total", "device"]
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in heads) + "</tr>"]
    for _, row in cost.iterrows():
        source = str(row.get("source", "trained"))
        if source == "imported":
            stages, total, device = f"imported from {row['origin']}", "no training cost", "not trained here"
        else:
            stages = stage_cost(row["iterations"], row["wall_seconds"])
            total = f"{_integer(row['total_iterations'])} it / {duration(row['total_wall_seconds'])}"
            device = _device(row)
        init = row.get("init_from")
        if not _missing(init):
            source += f", fine-tuned from {init}"
        cells = [str(row["model"]), source, _text(row["arch"]), _integer(row["parameters"]), stages, total, device]
        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render(
    *,
    title: str,
    conventions: str,
    compared: str,
    summary: pd.DataFrame,
    datasets: Sequence[str],
    best: Mapping[tuple[str, str], set[str]],
    answers: Sequence[Answer],
    advice: Sequence[Advice],
    stats: pd.DataFrame,
    stats_note: str,
    figures: Sequence[tuple[str, str, bytes]],
    cost: pd.DataFrame | None,
    footnotes: Sequence[str],
    baseline: str,
    generic: str,
    sections: Sequence[str] = (),
    costs: str = "",
    skipped: Mapping[str, str] | None = None,
    plan: str = "",
    answer: str = "",
) -> str:
    """The whole report page; `figures` holds (heading, caption, PNG bytes).

    `plan` (the declared statistical plan) and `answer` (the primary comparisons' table and figures) open the
    page, before any other result; `sections` are ready HTML sections placed after the statistics (folds, field
    metrics, training budget); `costs`, when given, is the cost section that replaces the card-only
    training-cost table; `skipped` {model: why it was left out of this run}.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{escape(title)}</h1>",
        f"<p>{escape(compared)}</p>",
        *(
            f'<p class="note">{escape(model)}: skipped \u2014 {escape(reason)}</p>'
            for model, reason in (skipped or {}).items()
        ),
        f'<p class="note">{escape(conventions)}</p>',
        plan,
        answer,
        "<h2>Answers in words</h2>",
    ]
    if not answers:
        parts.append("<p>No domain dataset with its own model was scored.</p>")
    else:
        parts.append('<ul class="answers">')
        parts += [f'<li>{escape(a.facts)} <span class="{a.css}">{escape(a.verdict)}</span></li>' for a in answers]
        parts.append("</ul>")
    parts.append(f'<p class="note">{escape(stats_note)}</p>')
    if advice:
        parts.append("<h2>What this means</h2>")
        parts.append('<ul class="meaning">')
        for item in advice:
            caveats = "".join(f"<li>{escape(c)}</li>" for c in item.caveats)
            parts.append(
                f"<li><b>{escape(item.dataset)}</b>: {escape(item.recommendation)}"
                + (f'<ul class="caveats">{caveats}</ul>' if caveats else "")
                + "</li>"
            )
        parts.append("</ul>")
    parts.append("<h2>Scores per dataset</h2>")
    parts.append(
        '<p class="note">Mean \u00b1 sample standard deviation over test images; best mean per metric in '
        "bold; \u0394 = model mean \u2212 reference mean on the same dataset.</p>"
    )
    for dataset in datasets:
        parts.append(f"<h3>{escape(dataset)}</h3>")
        parts.append(summary_table(summary, dataset, best, baseline=baseline, generic=generic))
    if not stats.empty:
        parts.append("<h2>Statistics</h2>")
        parts.append(f'<p class="note">{escape(stats_note)}</p>')
        for dataset in datasets:
            if (stats["dataset"] == dataset).any():
                parts.append(f"<h3>{escape(dataset)}</h3>")
                parts.append(stats_table(stats, dataset))
    parts += [s for s in sections if s]
    parts.append("<h2>Figures</h2>")
    for heading, caption, png in figures:
        parts += [
            "<figure>",
            f"<h3>{escape(heading)}</h3>",
            f'<img src="{data_uri(png)}" alt="{escape(heading)}">',
            f"<figcaption>{escape(caption)}</figcaption>",
            "</figure>",
        ]
    if costs:
        parts.append(costs)
    elif cost is not None and not cost.empty:
        parts.append("<h2>Training cost</h2>")
        parts.append(
            '<p class="note">Imported models were not trained here: their training cost is not this '
            "study's. A fine-tuned model's row is its fine-tuning only; add its init model's row.</p>"
        )
        parts.append(cost_table(cost))
    if footnotes:
        parts.append("<h2>Notes</h2>")
        parts.append('<ol class="note">' + "".join(f"<li>{escape(n)}</li>" for n in footnotes) + "</ol>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
