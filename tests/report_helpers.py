"""The report rule's outputs and settings for the report tests' small constructed studies."""

from __future__ import annotations

from pathlib import Path

SCALE = 4
DATASETS = ["mri", "astro", "generic"]
REPORT_FILES = {
    "html": "index.html",
    "summary": "summary.tsv",
    "stats": "stats.tsv",
    "folds": "folds.tsv",
    "forest": "forest.png",
    "paired": "paired.png",
    "metrics": "metrics.png",
    "heatmap": "heatmap.png",
    "curves": "learning_curves.png",
}


def report_outputs(out: Path, datasets: list[str] = DATASETS, **extra: str) -> dict:
    """The report rule's outputs in folder `out` (named as the rule names them), plus `extra` {name: file}."""
    files = {**REPORT_FILES, **{f"panel_{d}": f"panel_{d}.png" for d in datasets}, **extra}
    return {name: out / file for name, file in files.items()}


def report_settings(**extra) -> dict:
    """The report rule's settings for a small constructed study."""
    return {"baseline": "bicubic", "generic": "generic", "title": "SciSR study", "scale": SCALE, **extra}
