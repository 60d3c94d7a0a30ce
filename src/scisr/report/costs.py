"""What each model cost: training per stage (model cards), job wall time and peak memory (Snakemake benchmark
files), throughput and inference seconds per megapixel.

Conventions: device-hours are GPU-hours (wall seconds x GPUs / 3600) for a model trained on CUDA, else CPU-hours
(wall seconds x threads per process x processes / 3600). Training seconds are the model card's: wall-clock per
stage, validation included, summed over resumed runs; the benchmark's `s` is the wall time of the train job's
last execution (start-up, data loading and export included). Throughput: iterations per second of a stage, and
patches per second = batch_size x iterations / seconds. Inference seconds per megapixel: the infer job's
benchmark `s` (start-up and PNG writing included) over the megapixels of the predicted HR images. Peak memory:
the benchmark's `max_rss` (MB, resident set of the job's process tree). A fine-tuned model's cumulative seconds
add the training seconds of the model instance it started from (its card's init_from and init fold), recursively.
Under cross-validation a model has one instance per fold: costs.tsv has each fold's rows (`fold` 1..k) and, for a
model with several, rows `fold` = "all" that sum them (the cost of the whole cross-validated study; cumulative
counts each instance started from once). Inference rows sum a model's infer jobs over the test folds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from PIL import Image

from scisr.card import ModelCard
from scisr.prepare.split import pair_dirs
from scisr.report.tables import by_fold

PathLike = str | os.PathLike
COST_COLUMNS = [
    "model",
    "fold",
    "parameters",
    "device_name",
    "device",
    "threads",
    "gpus",
    "stage",
    "iterations",
    "seconds",
    "device_hours",
    "device_hours_unit",
    "iterations_per_s",
    "patches_per_s",
    "cumulative_seconds",
    "job_seconds",
    "max_rss_mb",
]
INFER_COLUMNS = ["model", "dataset", "images", "megapixels", "seconds", "s_per_megapixel", "max_rss_mb"]


def read_benchmark(path: PathLike) -> dict[str, float]:
    """A Snakemake benchmark TSV: wall seconds `s` (mean over repeats) and peak `max_rss` in MB (max).

    NaN where unmeasured.
    """
    table = pd.read_csv(path, sep="\t", na_values=["NA", "-", ""])
    if "s" not in table.columns:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' column)")
    seconds = pd.to_numeric(table["s"], errors="coerce")
    rss = pd.to_numeric(table["max_rss"], errors="coerce") if "max_rss" in table.columns else pd.Series([math.nan])
    return {
        "s": float(seconds.mean()) if seconds.notna().any() else math.nan,
        "max_rss": float(rss.max()) if rss.notna().any() else math.nan,
    }


def device_hours(card: ModelCard, seconds: float) -> tuple[float, str]:
    """Seconds of training as GPU-hours (CUDA) or CPU-hours (CPU), and which."""
    if card.device.startswith("cuda"):
        return seconds * max(1, card.gpus) / 3600, "GPU-hours"
    return seconds * max(1, card.threads) * max(1, card.gpus) / 3600, "CPU-hours"


def cumulative_seconds(model: str, cards: Mapping[str, Mapping[int, ModelCard]], fold: int = 1) -> float:
    """Training seconds of instance `fold` of `model` plus those of the instances it was initialised from
    (init_from and the init fold on its card, recursively)."""
    seen, total, name, at = set(), 0.0, model, int(fold)
    while name in cards and (name, at) not in seen:
        instances = cards[name]
        if at not in instances:
            at = sorted(instances)[0]
        seen.add((name, at))
        card = instances[at]
        total += card.total_wall_seconds
        init = (card.training or {}).get("init") or {}
        name, at = card.init_from, int(init.get("fold") or 1)
    return total


def training_costs(
    cards: Mapping[str, Mapping[int, PathLike]], benchmarks: Mapping[str, Mapping[int, PathLike]] | None = None
) -> pd.DataFrame:
    """One row per (model, fold, stage) and a `total` row per model and fold, plus `all` rows summing a model's
    folds when it has several: time, device-hours, throughput, job time, peak memory."""
    read = {model: {f: ModelCard.read(path) for f, path in by_fold(tree).items()} for model, tree in cards.items()}
    rows = []
    for model, instances in read.items():
        bench_paths = by_fold(benchmarks[model]) if benchmarks and model in benchmarks else {}
        per_fold = []
        for fold, card in instances.items():
            bench = read_benchmark(bench_paths[fold]) if fold in bench_paths else {}
            stage_rows = _stage_rows(model, str(fold), card, bench, cumulative_seconds(model, read, fold))
            per_fold.append(stage_rows)
            rows += stage_rows
        if len(instances) > 1:
            rows += _summed(model, per_fold, read)
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def _stage_rows(model: str, fold: str, card: ModelCard, bench: Mapping[str, float], cumulative: float) -> list[dict]:
    """The `total` row and one row per stage of one trained instance."""
    batch = (card.training.get("settings") or {}).get("batch_size")
    common = {
        "model": model,
        "fold": fold,
        "parameters": card.parameters,
        "device_name": card.device_name,
        "device": card.device,
        "threads": card.threads,
        "gpus": card.gpus,
    }
    stages = [("total", card.total_iterations, card.total_wall_seconds)]
    stages += [(s, n, float(card.wall_seconds.get(s, math.nan))) for s, n in card.iterations.items() if n]
    rows = []
    for stage, iterations, seconds in stages:
        hours, unit = device_hours(card, seconds)
        rate = iterations / seconds if seconds > 0 else math.nan
        rows.append(
            {
                **common,
                "stage": stage,
                "iterations": iterations,
                "seconds": seconds,
                "device_hours": hours,
                "device_hours_unit": unit,
                "iterations_per_s": rate,
                "patches_per_s": rate * batch if batch else math.nan,
                "cumulative_seconds": cumulative if stage == "total" else math.nan,
                "job_seconds": bench.get("s", math.nan) if stage == "total" else math.nan,
                "max_rss_mb": bench.get("max_rss", math.nan) if stage == "total" else math.nan,
            }
        )
    return rows


def _summed(model: str, per_fold: list[list[dict]], cards: Mapping[str, Mapping[int, ModelCard]]) -> list[dict]:
    """Rows `fold` = "all": each stage summed over a model's instances (rates from the sums, peak RSS the max)."""
    out = []
    for stage_rows in zip(*per_fold):
        first = dict(stage_rows[0])
        seconds = sum(r["seconds"] for r in stage_rows)
        iterations = sum(r["iterations"] for r in stage_rows)
        rate = iterations / seconds if seconds > 0 else math.nan
        batch_rate = first["patches_per_s"] / first["iterations_per_s"] if first["iterations_per_s"] else math.nan
        first.update(
            fold="all",
            iterations=iterations,
            seconds=seconds,
            device_hours=sum(r["device_hours"] for r in stage_rows),
            iterations_per_s=rate,
            patches_per_s=rate * batch_rate if batch_rate == batch_rate else math.nan,
        )
        if first["stage"] == "total":
            inits = {}
            for card in cards[model].values():
                if card.init_from:
                    init = (card.training or {}).get("init") or {}
                    at = int(init.get("fold") or 1)
                    inits[(card.init_from, at)] = cumulative_seconds(card.init_from, cards, at)
            first.update(
                cumulative_seconds=seconds + sum(inits.values()),
                job_seconds=sum(r["job_seconds"] for r in stage_rows),
                max_rss_mb=max((r["max_rss_mb"] for r in stage_rows), default=math.nan),
            )
        out.append(first)
    return out


def predicted_megapixels(test_dir: PathLike) -> tuple[int, float]:
    """Number of HR test images and their megapixels (the pixels a model predicts on that test set)."""
    hr_dir, _ = pair_dirs(test_dir)
    pixels, count = 0, 0
    for path in sorted(Path(hr_dir).glob("*.png")):
        with Image.open(path) as image:
            pixels += image.size[0] * image.size[1]
        count += 1
    return count, pixels / 1e6


def inference_costs(
    benchmarks: Mapping[str, Mapping[str, Mapping[int, PathLike]]], test_dirs: Mapping[str, Mapping[int, PathLike]]
) -> pd.DataFrame:
    """One row per (model, dataset): the infer jobs' seconds (summed over test folds), seconds per output
    megapixel and peak memory."""
    sizes = {
        (dataset, f): predicted_megapixels(path)
        for dataset, tree in test_dirs.items()
        for f, path in by_fold(tree).items()
    }
    rows = []
    for model, by_dataset in benchmarks.items():
        for dataset, tree in by_dataset.items():
            benches = {f: read_benchmark(path) for f, path in by_fold(tree).items()}
            seconds = sum(b["s"] for b in benches.values())
            images = sum(sizes.get((dataset, f), (0, 0.0))[0] for f in benches)
            megapixels = sum(sizes.get((dataset, f), (0, math.nan))[1] for f in benches)
            rss = [b["max_rss"] for b in benches.values() if not math.isnan(b["max_rss"])]
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "images": images,
                    "megapixels": megapixels,
                    "seconds": seconds,
                    "s_per_megapixel": seconds / megapixels if megapixels else math.nan,
                    "max_rss_mb": max(rss) if rss else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=INFER_COLUMNS)
