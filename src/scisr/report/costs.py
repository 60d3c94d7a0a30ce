"""What each model cost: training per stage (model cards), job wall time and peak memory (Snakemake benchmark
files), throughput and inference seconds per megapixel.

Conventions: device-hours are GPU-hours (wall seconds x GPUs / 3600) for a model trained on CUDA, else CPU-hours
(wall seconds x threads per process x processes / 3600). Training seconds are the model card's: wall-clock per
stage, validation included, summed over resumed runs; the benchmark's `s` is the wall time of the train job's
last execution (start-up, data loading and export included). Throughput: iterations per second of a stage, and
patches per second = batch_size x iterations / seconds. Inference seconds per megapixel: the infer job's
benchmark `s` (start-up and PNG writing included) over the megapixels of the predicted HR images. Peak memory:
the benchmark's `max_rss` (MB, resident set of the job's process tree). A fine-tuned model's cumulative seconds
add the training seconds of the model it started from (its card's init_from), recursively.
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

PathLike = str | os.PathLike
COST_COLUMNS = [
    "model", "parameters", "device_name", "device", "threads", "gpus", "stage", "iterations", "seconds",
    "device_hours", "device_hours_unit", "iterations_per_s", "patches_per_s", "cumulative_seconds",
    "job_seconds", "max_rss_mb",
]
INFER_COLUMNS = ["model", "dataset", "images", "megapixels", "seconds", "s_per_megapixel", "max_rss_mb"]


def read_benchmark(path: PathLike) -> dict[str, float]:
    """A Snakemake benchmark TSV: wall seconds `s` (mean over repeats) and peak `max_rss` in MB (max); NaN if unmeasured."""
    table = pd.read_csv(path, sep="\t", na_values=["NA", "-", ""])
    if "s" not in table.columns:
        raise ValueError(f"{path}: not a Snakemake benchmark file (no 's' column)")
    seconds = pd.to_numeric(table["s"], errors="coerce")
    rss = pd.to_numeric(table["max_rss"], errors="coerce") if "max_rss" in table.columns else pd.Series([math.nan])
    return {"s": float(seconds.mean()) if seconds.notna().any() else math.nan,
            "max_rss": float(rss.max()) if rss.notna().any() else math.nan}


def device_hours(card: ModelCard, seconds: float) -> tuple[float, str]:
    """Seconds of training as GPU-hours (CUDA) or CPU-hours (CPU), and which."""
    if card.device.startswith("cuda"):
        return seconds * max(1, card.gpus) / 3600, "GPU-hours"
    return seconds * max(1, card.threads) * max(1, card.gpus) / 3600, "CPU-hours"


def cumulative_seconds(model: str, cards: Mapping[str, ModelCard]) -> float:
    """Training seconds of `model` plus those of the models it was initialised from (init_from, recursively)."""
    seen, total, name = set(), 0.0, model
    while name in cards and name not in seen:
        seen.add(name)
        total += cards[name].total_wall_seconds
        name = cards[name].init_from
    return total


def training_costs(cards: Mapping[str, PathLike], benchmarks: Mapping[str, PathLike] | None = None) -> pd.DataFrame:
    """One row per (model, stage) and a `total` row per model: time, device-hours, throughput, job time, peak memory."""
    read = {model: ModelCard.read(path) for model, path in cards.items()}
    rows = []
    for model, card in read.items():
        bench = read_benchmark(benchmarks[model]) if benchmarks and model in benchmarks else {}
        batch = (card.training.get("settings") or {}).get("batch_size")
        common = {"model": model, "parameters": card.parameters, "device_name": card.device_name,
                  "device": card.device, "threads": card.threads, "gpus": card.gpus}
        stages = [("total", card.total_iterations, card.total_wall_seconds)]
        stages += [(s, n, float(card.wall_seconds.get(s, math.nan))) for s, n in card.iterations.items() if n]
        for stage, iterations, seconds in stages:
            hours, unit = device_hours(card, seconds)
            rate = iterations / seconds if seconds > 0 else math.nan
            rows.append({**common, "stage": stage, "iterations": iterations, "seconds": seconds,
                         "device_hours": hours, "device_hours_unit": unit, "iterations_per_s": rate,
                         "patches_per_s": rate * batch if batch else math.nan,
                         "cumulative_seconds": cumulative_seconds(model, read) if stage == "total" else math.nan,
                         "job_seconds": bench.get("s", math.nan) if stage == "total" else math.nan,
                         "max_rss_mb": bench.get("max_rss", math.nan) if stage == "total" else math.nan})
    return pd.DataFrame(rows, columns=COST_COLUMNS)


def predicted_megapixels(test_dir: PathLike) -> tuple[int, float]:
    """Number of HR test images and their megapixels (the pixels a model predicts on that test set)."""
    hr_dir, _ = pair_dirs(test_dir)
    pixels, count = 0, 0
    for path in sorted(Path(hr_dir).glob("*.png")):
        with Image.open(path) as image:
            pixels += image.size[0] * image.size[1]
        count += 1
    return count, pixels / 1e6


def inference_costs(benchmarks: Mapping[str, Mapping[str, PathLike]], test_dirs: Mapping[str, PathLike]
                    ) -> pd.DataFrame:
    """One row per (model, dataset): the infer job's seconds, seconds per output megapixel and peak memory."""
    sizes = {dataset: predicted_megapixels(path) for dataset, path in test_dirs.items()}
    rows = []
    for model, by_dataset in benchmarks.items():
        for dataset, path in by_dataset.items():
            bench = read_benchmark(path)
            images, megapixels = sizes.get(dataset, (0, math.nan))
            rows.append({"model": model, "dataset": dataset, "images": images, "megapixels": megapixels,
                         "seconds": bench["s"], "s_per_megapixel": bench["s"] / megapixels if megapixels else math.nan,
                         "max_rss_mb": bench["max_rss"]})
    return pd.DataFrame(rows, columns=INFER_COLUMNS)
