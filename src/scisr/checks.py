"""Cross-field rules of the configuration that a JSON schema cannot express, written once.

Pure Python, no torch and no third-party import: `rules/common.smk` calls these at parse time (to refuse a
bad config before any job starts) and the library calls them before it works (for users without the
workflow). Each function returns a list of problems, each naming the config key(s) and the fix; empty = fine.
`prefix` is put before every key named, e.g. "models.mri.train." in the workflow, "" for a plain settings dict.
"""

from __future__ import annotations

from collections.abc import Mapping

FRACTION_TOLERANCE = 1e-6


def train_problems(settings: Mapping, scale: int, prefix: str = "") -> list[str]:
    """Training settings: batch divisible by gpus, patch a multiple of scale, perceptual weight needs a file."""
    problems = []
    batch, gpus = settings["batch_size"], settings["gpus"]
    if gpus >= 1 and batch % gpus:
        problems.append(
            f"{prefix}batch_size {batch} is not divisible by {prefix}gpus {gpus}: batch_size is the global "
            f"batch, split evenly over the {gpus} processes; make it a multiple of {gpus} "
            f"(e.g. {batch + gpus - batch % gpus})"
        )
    if settings["patch_size"] % scale:
        problems.append(f"{prefix}patch_size {settings['patch_size']} must be a multiple of the scale {scale}")
    perceptual = settings["perceptual"]
    if perceptual["weight"] > 0 and not perceptual["weights_file"]:
        problems.append(
            f"{prefix}perceptual.weight is {perceptual['weight']:g} but {prefix}perceptual.weights_file is not "
            "set: give the path of a torchvision vgg19 state dict (a .pth file such as vgg19-dcbb9e9d.pth, as "
            "saved by torch.save(torchvision.models.vgg19(weights='IMAGENET1K_V1').state_dict(), path); SciSR "
            "never downloads weights), or set perceptual.weight: 0"
        )
    return problems


def split_problems(fractions: Mapping[str, float], tile_size: int | None, scale: int, prefix: str = "") -> list[str]:
    """Split settings: fractions of train, val and test are positive and sum to 1; tiles a multiple of scale."""
    problems = []
    names = ("train", "val", "test")
    if set(fractions) != set(names):
        problems.append(f"{prefix}fractions must name exactly {', '.join(names)}; got {', '.join(fractions)}")
    elif any(float(fractions[name]) <= 0 for name in names):
        problems.append(f"{prefix}fractions must all be > 0, got {dict(fractions)}")
    elif abs(sum(float(fractions[name]) for name in names) - 1.0) > FRACTION_TOLERANCE:
        total = sum(float(fractions[name]) for name in names)
        problems.append(f"{prefix}fractions must sum to 1, got {dict(fractions)} (sum {total:g})")
    if tile_size and tile_size % scale:
        problems.append(f"{prefix}tile_size {tile_size} must be a multiple of the scale {scale}")
    return problems


def normalize_problems(settings: Mapping, prefix: str = "") -> list[str]:
    """Normalization settings: the low percentile lies below the high one."""
    low, high = float(settings["low_percentile"]), float(settings["high_percentile"])
    if not low < high:
        return [f"{prefix}low_percentile {low:g} must be below {prefix}high_percentile {high:g} "
                "(they are the values mapped to 0 and to 1)"]
    return []


def infer_problems(tile: int, overlap: int, prefix: str = "") -> list[str]:
    """Tiled inference: the overlap of neighbouring tiles is smaller than a tile."""
    if not 0 <= overlap < tile:
        return [f"{prefix}overlap {overlap} must be at least 0 and below {prefix}tile {tile} "
                "(neighbouring LR tiles share `overlap` pixels)"]
    return []


def config_problems(config: Mapping) -> list[str]:
    """The workflow config: models and evaluate name known datasets; every dataset's split settings."""
    datasets = sorted(config["datasets"])
    problems = []
    for name, model in config["models"].items():
        if model["data"] not in config["datasets"]:
            problems.append(f"models.{name}.data: unknown dataset {model['data']!r} (known: {', '.join(datasets)})")
    for name in config["evaluate"]:
        if name not in config["datasets"]:
            problems.append(f"evaluate: unknown dataset {name!r} (known: {', '.join(datasets)})")
    for name, dataset in config["datasets"].items():
        split = dataset["split"]
        problems += split_problems(split["fractions"], split["tile_size"], config["scale"],
                                   prefix=f"datasets.{name}.split.")
        problems += normalize_problems(dataset["normalize"], prefix=f"datasets.{name}.normalize.")
    problems += infer_problems(config["infer"]["tile"], config["infer"]["overlap"], prefix="infer.")
    return problems
