"""Self-contained HTML for the report: strings only, every text escaped, figures as data URIs."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import pandas as pd

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1180px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e3e3e3; text-align: right; white-space: nowrap; }
th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
ul.answers li { margin-bottom: 0.4em; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #555; }
.note { font-size: 0.88em; color: #555; }
.worse { color: #a33; } .better { color: #264; }
"""

MINUS = "\u2212"


def fmt(value: Any, digits: int = 4, *, signed: bool = False) -> str:
    """Format a number for display: fixed digits, a true minus sign, an en dash for missing values."""
    if _missing(value):
        return "\u2013"
    if isinstance(value, float) and math.isinf(value):
        return "\u221e" if value > 0 else f"{MINUS}\u221e"
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", MINUS)


def data_uri(png: bytes) -> str:
    """A PNG as a base64 data URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def model_label(model: str, dataset: str) -> str:
    """How an answer line names a domain model."""
    return f"the {model}-trained model" if model == dataset else f"the {model} model"


def _compare(delta: float, reference: str, digits: int, unit: str, lower_word: str, higher_word: str) -> str:
    """'0.0123 RMSE lower than bicubic' from a signed difference of means."""
    if math.isnan(delta):
        return f"not comparable to {reference} (no {reference} scores)"
    if delta == 0:
        return f"equal in mean {unit} to {reference}"
    word = lower_word if delta < 0 else higher_word
    return f"{abs(delta):.{digits}f} {unit} {word} than {reference}".replace("  ", " ")


def answer_line(row: Mapping[str, Any], *, baseline: str, generic: str) -> str:
    """One plain-words answer (HTML) for a domain dataset from a `domain_verdicts` row."""
    dataset = str(row["dataset"])
    if not row.get("model"):
        text = f"{dataset}: no model was trained on {dataset}, so there is no answer here."
        return f"<li>{escape(text)}</li>"
    model = str(row["model"])
    label = model_label(model, dataset)
    d_b, d_g = float(row["d_rmse_vs_bicubic"]), float(row["d_rmse_vs_generic"])
    text = f"{dataset}: {label} is {_compare(d_b, baseline, 4, 'RMSE', 'lower', 'higher')}"
    if not math.isnan(d_g):
        text += f" and {_compare(d_g, generic, 4, '', 'lower', 'higher')}"
    else:
        text += f" ({generic} model not scored on {dataset})"
    psnr_bits = []
    for ref, col in ((baseline, "d_psnr_vs_bicubic"), (generic, "d_psnr_vs_generic")):
        if not math.isnan(float(row[col])):
            psnr_bits.append(f"{fmt(float(row[col]), 2, signed=True)} dB vs {ref}")
    if psnr_bits:
        text += "; PSNR " + ", ".join(psnr_bits)
    wins = []
    for ref, key in ((baseline, "bicubic"), (generic, "generic")):
        if row.get(f"pairs_{key}"):
            wins.append(f"{int(row[f'wins_{key}'])}/{int(row[f'pairs_{key}'])} images against {ref}")
    if wins:
        text += " (lower RMSE on " + " and ".join(wins) + ")"
    text += "."
    if math.isnan(d_g):
        verdict, css = f"No comparison with the {generic} model is possible.", ""
    elif d_g < 0:
        verdict, css = f"Verdict: {label} beats the {generic} model on {dataset}.", "better"
    elif d_g > 0:
        verdict = (f"Verdict: {label} is worse than the {generic} model on {dataset}; "
                   "domain training did not pay off here.")
        css = "worse"
    else:
        verdict, css = f"Verdict: {label} and the {generic} model tie on {dataset}.", ""
    return f'<li>{escape(text)} <span class="{css}">{escape(verdict)}</span></li>'


def summary_table(
    summary: pd.DataFrame, dataset: str, best: Mapping[tuple[str, str], set[str]], *, baseline: str, generic: str
) -> str:
    """The summary rows of one dataset as an HTML table, best mean per metric in bold."""
    sel = summary[summary["dataset"] == dataset]
    heads = ["model", "n", "RMSE", "PSNR (dB)", "SSIM", f"\u0394RMSE vs {baseline}", f"\u0394PSNR vs {baseline}",
             f"\u0394SSIM vs {baseline}", f"\u0394RMSE vs {generic}", f"\u0394PSNR vs {generic}",
             f"wins vs {baseline}"]
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
        for col, digits in (("d_rmse_vs_bicubic", 4), ("d_psnr_vs_bicubic", 2), ("d_ssim_vs_bicubic", 4),
                            ("d_rmse_vs_generic", 4), ("d_psnr_vs_generic", 2)):
            cells.append(escape(fmt(row[col], digits, signed=True)))
        wins = row["wins_vs_bicubic"]
        cells.append(escape("\u2013" if math.isnan(wins) else f"{100 * wins:.0f}%"))
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _duration(seconds: Any) -> str:
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
            parts.append(f"{stage} {_integer(count)} it / {_duration(wall_seconds.get(stage))}")
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
    """The training-cost table from model cards: per-stage iterations and wall time, totals, size, device."""
    heads = ["model", "architecture", "parameters", "iterations / wall time per stage", "total", "device"]
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in heads) + "</tr>"]
    for _, row in cost.iterrows():
        total = f"{_integer(row['total_iterations'])} it / {_duration(row['total_wall_seconds'])}"
        cells = [str(row["model"]), _text(row["arch"]), _integer(row["parameters"]),
                 stage_cost(row["iterations"], row["wall_seconds"]), total, _device(row)]
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
    verdicts: pd.DataFrame,
    figures: Sequence[tuple[str, str, bytes]],
    cost: pd.DataFrame | None,
    footnotes: Sequence[str],
    baseline: str,
    generic: str,
) -> str:
    """The whole report page; `figures` holds (heading, caption, PNG bytes)."""
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
        f'<p class="note">{escape(conventions)}</p>',
        "<h2>Answers</h2>",
    ]
    if verdicts.empty:
        parts.append("<p>No domain dataset with its own model was scored.</p>")
    else:
        parts.append('<ul class="answers">')
        parts += [answer_line(row, baseline=baseline, generic=generic) for row in verdicts.to_dict("records")]
        parts.append("</ul>")
    parts.append("<h2>Scores per dataset</h2>")
    parts.append('<p class="note">Mean \u00b1 sample standard deviation over test images; best mean per metric in '
                 "bold; \u0394 = model mean \u2212 reference mean on the same dataset.</p>")
    for dataset in datasets:
        parts.append(f"<h3>{escape(dataset)}</h3>")
        parts.append(summary_table(summary, dataset, best, baseline=baseline, generic=generic))
    parts.append("<h2>Figures</h2>")
    for heading, caption, png in figures:
        parts += [
            "<figure>",
            f"<h3>{escape(heading)}</h3>",
            f'<img src="{data_uri(png)}" alt="{escape(heading)}">',
            f"<figcaption>{escape(caption)}</figcaption>",
            "</figure>",
        ]
    if cost is not None and not cost.empty:
        parts.append("<h2>Training cost</h2>")
        parts.append(cost_table(cost))
    if footnotes:
        parts.append("<h2>Notes</h2>")
        parts.append('<ol class="note">' + "".join(f"<li>{escape(n)}</li>" for n in footnotes) + "</ol>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
