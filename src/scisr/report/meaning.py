"""The report's words, built from stats.tsv rows only: answer lines and the "what this means" section."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from scisr.report.stats import lookup, subjects_needed
from scisr.report.text import number

MINUS = "\u2212"
NAMES = {"rmse": ("RMSE", 4, ""), "psnr": ("PSNR", 2, " dB"), "ssim": ("SSIM", 4, "")}


@dataclass
class Answer:
    """One answer line: the facts, then a verdict sentence and its CSS class."""

    dataset: str
    facts: str
    verdict: str
    css: str = ""


@dataclass
class Advice:
    """What one dataset's results mean: a recommendation and its caveats."""

    dataset: str
    recommendation: str
    caveats: list[str] = field(default_factory=list)


def _num(value: float, digits: int) -> str:
    """A signed number with a true minus sign; an en dash for NaN."""
    return number(value, digits, signed=True)


def _p(value: float) -> str:
    """A p-value for reading: three significant digits, or '<0.001'."""
    if value is None or math.isnan(value):
        return "\u2013"
    return "<0.001" if value < 0.001 else f"{value:.3g}"


def own_models(models: Sequence[str], dataset: str) -> list[str]:
    """The models trained on `dataset`: named like it, or `<dataset>_<suffix>`; the plain one first."""
    return sorted((m for m in models if m == dataset or m.startswith(f"{dataset}_")), key=lambda m: (m != dataset, m))


def model_label(model: str, dataset: str) -> str:
    """How a sentence names a domain model."""
    return f"the {model}-trained model" if model == dataset else f"the {model} model"


def describe(row: Mapping) -> str:
    """A stats row in words: the difference with its CI (and ΔPSNR beside ΔRMSE), subjects improved, subjects
    (images), Wilcoxon and Holm p-values."""
    name, digits, unit = NAMES.get(str(row.get("metric", "rmse")), (str(row.get("metric")), 4, ""))
    text = (
        f"\u0394{name} {_num(row['mean_diff'], digits)}{unit} (95% CI {_num(row['ci_low'], digits)} to "
        f"{_num(row['ci_high'], digits)})"
    )
    if "psnr_diff" in row:
        text += f", \u0394PSNR {_num(row['psnr_diff'], 2)} dB"
    n, images = int(row["n_subjects"]), int(row["n_images"])
    if "n_improved" in row and n:
        text += f"; better on {int(row['n_improved'])} of {n} subjects"
    text += f"; {n} subject{'s' if n != 1 else ''} ({images} image{'s' if images != 1 else ''})"
    text += f", Wilcoxon p = {_p(row['p_value'])}, Holm p = {_p(row['p_holm'])}"
    if int(row.get("shared_subjects", 0)):
        text += f"; {int(row['shared_subjects'])} of these subject(s) also have images in training"
    return text


def _row(stats: pd.DataFrame, dataset: str, model: str, reference: str, metric: str = "rmse") -> dict | None:
    """The stats row of a comparison on `metric`, with the PSNR difference added beside RMSE."""
    row = lookup(stats, dataset, model, reference, metric)
    if row is None:
        return None
    psnr = lookup(stats, dataset, model, reference, "psnr") if metric == "rmse" else None
    if psnr is not None:
        row["psnr_diff"] = psnr["mean_diff"]
    return row


def _verdict_sentence(row: Mapping, subject: str, other: str, dataset: str) -> tuple[str, str]:
    """The verdict sentence and CSS class of one row."""
    verdict = row["verdict"]
    name = NAMES.get(str(row.get("metric", "rmse")), (str(row.get("metric")),))[0]
    family = "primary" if row.get("family") == "primary" else "secondary"
    if verdict == "better":
        return (
            f"Verdict: {subject} is better than {other} on {dataset} ({name}, {family}, Holm p = {_p(row['p_holm'])})."
        ), "better"
    if verdict == "worse":
        return (
            f"Verdict: {subject} is worse than {other} on {dataset} ({name}, {family}, Holm p = {_p(row['p_holm'])})."
        ), "worse"
    if verdict == "no significant difference":
        return (
            f"Verdict: no significant difference between {subject} and {other} on {dataset} "
            f"({name}, {family}, Holm p = {_p(row['p_holm'])})."
        ), ""
    n, m = int(row["n_subjects"]), int(row.get("family_size", 1) or 1)
    return (
        f"Verdict: too few subjects to tell {subject} from {other} on {dataset}: {n} test subject"
        f"{'s' if n != 1 else ''}; in a family of {m} comparison{'s' if m != 1 else ''} at least "
        f"{subjects_needed(m)} are needed before any difference can reach p < 0.05."
    ), "few"


def answers(
    stats: pd.DataFrame,
    models: Sequence[str],
    datasets: Sequence[str],
    *,
    baseline: str,
    generic: str,
    metric: str = "rmse",
) -> list[Answer]:
    """One answer per (domain dataset, its own model), from the `metric` rows of stats (never from means alone)."""
    out = []
    for dataset in datasets:
        if dataset in (generic, baseline):
            continue
        own = own_models(models, dataset)
        if not own:
            out.append(
                Answer(dataset, f"{dataset}: no model was trained on {dataset}, so there is no answer here.", "")
            )
            continue
        for model in own:
            label = model_label(model, dataset)
            vs_generic = _row(stats, dataset, model, generic, metric)
            vs_base = _row(stats, dataset, model, baseline, metric)
            parts = []
            if vs_generic is not None:
                parts.append(f"vs {generic}: {describe(vs_generic)}")
            if vs_base is not None:
                parts.append(f"vs {baseline}: {describe(vs_base)}")
            facts = f"{dataset}: {label} " + ("; ".join(parts) if parts else "was not scored") + "."
            decisive = vs_generic if vs_generic is not None else vs_base
            if decisive is None:
                out.append(Answer(dataset, facts, "No comparison is possible."))
                continue
            other = f"the {generic} model" if decisive is vs_generic else baseline
            verdict, css = _verdict_sentence(decisive, label, other, dataset)
            out.append(Answer(dataset, facts, verdict, css))
    return out


def _budget(history: pd.DataFrame | None) -> str | None:
    """'525 iterations (500 pixel, 25 gan)' from a history frame: each stage's iterations, the untrained row left
    out."""
    if history is None or history.empty:
        return None
    hist = history.sort_values("iteration")
    last = int(hist["iteration"].max())
    ends = hist[hist["stage"] != "init"].groupby("stage", sort=False)["iteration"].max()
    if len(ends) > 1:
        starts = [0, *ends.iloc[:-1].tolist()]  # a stage starts where the one before it ended
        bits = [f"{int(end) - int(start)} {stage}" for (stage, end), start in zip(ends.items(), starts)]
        return f"{last} iterations ({', '.join(bits)})"
    return f"{last} iterations"


def _recommend(
    stats: pd.DataFrame, dataset: str, own: list[str], *, baseline: str, generic: str, metric: str = "rmse"
) -> str:
    """Which model to use on one domain dataset, from the verdicts against generic and baseline."""
    rows = {m: _row(stats, dataset, m, generic, metric) for m in own}
    better = [m for m in own if rows[m] is not None and rows[m]["verdict"] == "better"]
    if better:
        sign = 1 if metric == "rmse" else -1
        best = min(better, key=lambda m: sign * rows[m]["mean_diff"])
        return (
            f"Use {model_label(best, dataset)}: it is significantly better than the {generic} model "
            f"on {dataset} ({describe(rows[best])})."
        )
    base = _row(stats, dataset, generic, baseline, metric)
    base_note = ""
    if base is not None:
        base_note = f" The {generic} model against {baseline}: {base['verdict']} ({describe(base)})."
    worse = [m for m in own if rows[m] is not None and rows[m]["verdict"] == "worse"]
    if worse:
        return (
            f"Use the {generic} model: {', '.join(worse)} {'is' if len(worse) == 1 else 'are'} significantly "
            f"worse than it on {dataset}; domain training did not pay off at this budget." + base_note
        )
    few = [m for m in own if rows[m] is not None and rows[m]["verdict"] == "too few subjects to tell"]
    if few:
        need = subjects_needed(int(rows[few[0]].get("family_size", 1) or 1))
        return (
            f"No choice can be defended yet: the {dataset} test set has too few subjects to tell the models "
            f"apart. Until it has at least {need}, prefer the {generic} model, which needs no domain "
            "training, and treat the mean differences in the tables as anecdotes." + base_note
        )
    if any(r is not None for r in rows.values()):
        return (
            f"No significant difference between {', '.join(own)} and the {generic} model on {dataset} with "
            f"this many test subjects: neither is shown to be better, so the {generic} model, which needs no "
            "domain training, is the simpler choice." + base_note
        )
    return f"No comparison with the {generic} model was made on {dataset}." + base_note


def what_this_means(
    stats: pd.DataFrame,
    models: Sequence[str],
    datasets: Sequence[str],
    *,
    baseline: str,
    generic: str,
    subjects: pd.DataFrame | None = None,
    histories: Mapping[str, pd.DataFrame] | None = None,
    degradations: Mapping[str, str] | None = None,
    metric: str = "rmse",
) -> list[Advice]:
    """Per dataset: which model to use and the caveats (data size, degradation, budget, shared subjects)."""
    histories = histories or {}
    out = []
    for dataset in datasets:
        own = own_models(models, dataset) if dataset != generic else []
        if dataset == generic:
            base = _row(stats, dataset, generic, baseline, metric)
            text = (
                f"On {dataset} (the generic model's own kind of image) the {generic} model against {baseline}: "
                f"{base['verdict']} ({describe(base)})."
                if base is not None
                else f"No {generic} model was scored on {dataset}."
            )
            advice = Advice(dataset, text)
        elif not own:
            advice = Advice(dataset, f"No model was trained on {dataset}; only the cross-domain matrix applies.")
        else:
            advice = Advice(dataset, _recommend(stats, dataset, own, baseline=baseline, generic=generic, metric=metric))
        rows = stats[(stats["dataset"] == dataset) & (stats["metric"] == metric)]
        if not rows.empty:
            n_sub, n_img = int(rows["n_subjects"].max()), int(rows["n_images"].max())
            how = str(rows["subjects"].iloc[0])
            size = f"Test data: {n_img} image(s) from {n_sub} subject(s)"
            if subjects is not None and (subjects["dataset"] == dataset).any():
                sel = subjects[subjects["dataset"] == dataset]
                folds = int(sel["fold"].max()) if "fold" in sel else 1
                train = sel[sel["split"] == "train"]
                if folds > 1:
                    per_fold = train.groupby("fold")["subject_id"].nunique()
                    size += (
                        f"; each of the {folds} folds' models trained on {int(per_fold.min())}\u2013"
                        f"{int(per_fold.max())} subject(s)"
                    )
                else:
                    size += f"; training data: {len(train)} image(s) from {train['subject_id'].nunique()} subject(s)"
            advice.caveats.append(size + ".")
            shared = int(rows["shared_subjects"].max())
            if shared:
                advice.caveats.append(
                    f"{shared} of the {n_sub} test subject(s) also have images in {dataset}'s training split "
                    "(tiles of one image or slabs of one volume): scores of models trained on it measure "
                    "generalisation within those subjects, not to new subjects."
                )
            elif how.startswith("each image"):
                advice.caveats.append(
                    "No split table was given, so each image counts as its own subject; if "
                    "images share subjects, the confidence intervals and p-values are too "
                    "optimistic."
                )
        if degradations and dataset in degradations:
            advice.caveats.append(
                f"LR images were made from HR with the '{degradations[dataset]}' degradation; "
                "real low-resolution acquisitions may degrade differently."
            )
        else:
            advice.caveats.append(
                "LR images were made from HR by a simulated degradation (the dataset's "
                "split.degradation setting); real low-resolution acquisitions may differ."
            )
        budgets = [
            f"{m}: {b}" for m in ([generic] if generic in models else []) + own if (b := _budget(histories.get(m)))
        ]
        if budgets:
            advice.caveats.append(
                "Training budget (last validated iteration): "
                + "; ".join(budgets)
                + ". A larger budget may change the answer."
            )
        out.append(advice)
    return out
