"""Cross-field rules of the configuration that a JSON schema cannot express, written once.

Pure Python, no torch and no third-party import: `rules/common.smk` calls these at parse time (to refuse a
bad config before any job starts) and the library calls them before it works (for users without the
workflow). Each function returns a list of problems, each naming the config key(s) and the fix; empty = fine.
`prefix` is put before every key named, e.g. "models.mri.train." in the workflow, "" for a plain settings dict.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath

from scisr.packaged import PACKAGED

FRACTION_TOLERANCE = 1e-6


def total_iterations(settings: Mapping) -> int:
    """A training schedule's length: pixel.iterations + gan.iterations (the one place the stages are summed)."""
    return int(settings["pixel"]["iterations"]) + int(settings["gan"]["iterations"])


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
        return [
            f"{prefix}low_percentile {low:g} must be below {prefix}high_percentile {high:g} "
            "(they are the values mapped to 0 and to 1)"
        ]
    return []


def infer_problems(tile: int, overlap: int, prefix: str = "") -> list[str]:
    """Tiled inference: the overlap of neighbouring tiles is smaller than a tile."""
    if not 0 <= overlap < tile:
        return [
            f"{prefix}overlap {overlap} must be at least 0 and below {prefix}tile {tile} "
            "(neighbouring LR tiles share `overlap` pixels)"
        ]
    return []


def config_problems(config: Mapping) -> list[str]:
    """The workflow config: models and evaluate name known datasets; every dataset's split settings."""
    datasets = sorted(config["datasets"])
    problems = model_problems(config["models"], config["datasets"])
    for name in config["evaluate"]:
        if name not in config["datasets"]:
            problems.append(f"evaluate: unknown dataset {name!r} (known: {', '.join(datasets)})")
    for name, dataset in config["datasets"].items():
        split = dataset["split"]
        problems += split_problems(
            split["fractions"], split["tile_size"], config["scale"], prefix=f"datasets.{name}.split."
        )
        problems += normalize_problems(dataset["normalize"], prefix=f"datasets.{name}.normalize.")
    problems += infer_problems(config["infer"]["tile"], config["infer"]["overlap"], prefix="infer.")
    return problems


PRETRAINED = "pretrained"  # the imported generic model's name, compared with the generic model in the report


def model_problems(models: Mapping[str, Mapping], datasets: Mapping) -> list[str]:
    """The `models` block: known datasets, fine-tuning `init` chains, imported models' keys, `<dataset>_<suffix>`
    names."""
    known = ", ".join(sorted(datasets))
    problems = []
    for name, model in models.items():
        key = f"models.{name}"
        if "import" in model:
            problems += import_problems(name, model["import"])
            extra = [k for k in ("init", "data") if k in model] + (["train"] if model.get("train") else [])
            if extra:
                problems.append(
                    f"{key}: an imported model (import: ...) is not trained, so it takes no "
                    f"{', '.join(extra)}; to fine-tune it, add another model with init: {name}"
                )
            continue
        if name == PRETRAINED:
            problems.append(
                f"{key}: the name {PRETRAINED!r} is kept for imported weights: give it `import:` "
                "(e.g. import: realesrgan-x4plus) or choose another name"
            )
        if model.get("licence") is not None:
            problems.append(f"{key}.licence: only imported models take a licence")
        data = model["data"]
        if data not in datasets:
            problems.append(f"{key}.data: unknown dataset {data!r} (known: {known})")
        prefix = name.split("_", 1)[0]
        if "_" in name and prefix != data:
            problems.append(
                f"{key}: a name <dataset>_<suffix> marks a model of that dataset, but it learns from "
                f"{data!r}; rename it (e.g. {data}_{name.split('_', 1)[1]}) or set data: {prefix}"
            )
        init = model.get("init")
        if init is None:
            continue
        if init not in models:
            problems.append(f"{key}.init: unknown model {init!r} (known: {', '.join(sorted(models))})")
            continue
        seen, step = [name], init
        while step is not None and step in models and step not in seen:
            seen.append(step)
            step = models[step].get("init")
        if step in seen:
            problems.append(f"{key}.init: the models start from each other in a loop ({' -> '.join([*seen, step])})")
    return problems


def init_problems(name: str, generator: Mapping, init: str, init_generator: Mapping | None) -> list[str]:
    """Fine-tuning: model `name`'s generator settings against those of its `init` model.

    `init_generator` is the init model's merged `train.generator` when it is trained (compared key by key) or
    None when it is imported: then its card is checked when training starts, and only the architecture can be
    checked here (imported weights are RRDBNets).
    """
    prefix = f"models.{name}.train.generator"
    if init_generator is None:
        if generator.get("arch") != "rrdbnet":
            return [
                f"{prefix}.arch is {generator.get('arch')!r} but init model {init!r} is imported (an RRDBNet): "
                f"set {prefix} to its architecture, e.g. {{arch: rrdbnet, channels: 64, blocks: 23, growth: 32, "
                "global_skip: false}} for Real-ESRGAN x4plus"
            ]
        return []
    if dict(generator) == dict(init_generator):
        return []
    differ = sorted(k for k in set(generator) | set(init_generator) if generator.get(k) != init_generator.get(k))
    shown = "; ".join(f"{k}: {generator.get(k)!r} vs {init_generator.get(k)!r}" for k in differ)
    return [
        f"{prefix} differs from that of its init model {init!r} ({shown}): fine-tuning needs the same "
        f"architecture and sizes; set {prefix} to match models.{init}'s generator"
    ]


def import_problems(name: str, source: str | list[str]) -> list[str]:
    """An imported model's `import`: a packaged model name, one PyTorch checkpoint, or an ncnn .param/.bin pair."""
    key = f"models.{name}.import"
    if isinstance(source, str):
        if source in PACKAGED or PurePath(source).suffix not in ("", ".param", ".bin"):
            return []
        if PurePath(source).suffix:
            return [f"{key}: {source!r} is one half of an ncnn model: give both files, [x.param, x.bin]"]
        return [
            f"{key}: {source!r} is not a packaged model (known: {', '.join(sorted(PACKAGED))}) nor a weights "
            "file (.pth, or an ncnn [.param, .bin] pair)"
        ]
    suffixes = sorted(PurePath(path).suffix for path in source)
    if len(source) == 2 and suffixes != [".bin", ".param"]:
        return [f"{key}: two files must be an ncnn .param and its .bin, got {', '.join(source)}"]
    if len(source) == 1:
        return import_problems(name, source[0])
    return []
