# Config validation, the lists of datasets and models, wildcard constraints and the
# input functions (get_*) of the phases. No heavy imports: parsing stays fast.
# Jobs import scisr from the venv (editable install) or, in a conda env, through the
# scripts/scisr link to src/scisr, which Snakemake puts on the path of every script.
import copy
import sys
from pathlib import Path

import yaml
from snakemake.utils import validate


def _drop_foreign_source_keys(config):
    """Drop from each dataset's source the keys of other kinds than its own, with a note.

    `--configfile` files are deep-merged over config/config.yaml, so a user file that switches
    a dataset to another kind (e.g. `source: {kind: local, path: ...}`) inherits the default's
    keys (`set: mri`). Keys that config/schema.yaml declares only for other kinds are removed;
    keys no kind declares stay, so validation still rejects typos.
    """
    schema_path = Path(workflow.basedir) / "config" / "schema.yaml"
    defs = yaml.safe_load(schema_path.read_text())["$defs"]
    kinds = {
        name.removeprefix("source_"): set(spec["properties"])
        for name, spec in defs.items()
        if name.startswith("source_")
    }
    for name, dataset in (config.get("datasets") or {}).items():
        source = dataset.get("source") if isinstance(dataset, dict) else None
        if not isinstance(source, dict) or source.get("kind") not in kinds:
            continue
        own = kinds[source["kind"]]
        other = set().union(*kinds.values()) - own
        dropped = sorted(key for key in source if key in other)
        for key in dropped:
            del source[key]
        if dropped:
            print(
                f"note: datasets.{name}.source is kind {source['kind']}; dropped "
                f"{', '.join(dropped)} (keys of other kinds, inherited from a merged config file)",
                file=sys.stderr,
            )


_drop_foreign_source_keys(config)
validate(config, "../config/schema.yaml")

SRC = Path(workflow.basedir) / "src"
# the workflow's own library, not whichever scisr is installed: get_code reads its files
sys.path.insert(0, str(SRC))

from scisr.codeinputs import code_files

DATASETS = sorted(config["datasets"])
MODELS = sorted(config["models"])
BASELINE = "bicubic"
ALL_MODELS = [BASELINE] + MODELS
EVALUATE = list(config["evaluate"])
GENERIC = config["generic_model"]


def _check_names():
    """Cross-key checks the schema cannot express."""
    problems = []
    for name, model in config["models"].items():
        if model["data"] not in config["datasets"]:
            problems.append(
                f"models.{name}.data: unknown dataset {model['data']!r} "
                f"(known: {', '.join(DATASETS)})"
            )
    for name in EVALUATE:
        if name not in config["datasets"]:
            problems.append(
                f"evaluate: unknown dataset {name!r} (known: {', '.join(DATASETS)})"
            )
    for name, dataset in config["datasets"].items():
        fractions = dataset["split"]["fractions"]
        if abs(sum(fractions.values()) - 1.0) > 1e-6:
            problems.append(f"datasets.{name}.split.fractions must sum to 1")
        if dataset["split"]["tile_size"] % config["scale"]:
            problems.append(
                f"datasets.{name}.split.tile_size must be a multiple of scale"
            )
    if problems:
        raise ValueError("config/config.yaml: " + "; ".join(problems))


_check_names()


def _deep_merge(base, override):
    """Return `base` updated recursively with `override` (neither is modified)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _train_settings(model):
    """Validated training settings of one model: global `train` + its overrides."""
    settings = _deep_merge(config["train"], config["models"][model]["train"])
    validate(settings, "../config/train.schema.yaml")
    if settings["batch_size"] % settings["gpus"]:
        raise ValueError(
            f"models.{model}: train.batch_size {settings['batch_size']} is not divisible by "
            f"train.gpus {settings['gpus']}: batch_size is the global batch, split evenly over "
            f"the {settings['gpus']} processes; make it a multiple of {settings['gpus']}"
        )
    if settings["patch_size"] % config["scale"]:
        raise ValueError(
            f"models.{model}: train.patch_size must be a multiple of scale {config['scale']}"
        )
    perceptual = settings["perceptual"]
    if perceptual["weight"] > 0 and not perceptual["weights_file"]:
        raise ValueError(
            f"models.{model}: train.perceptual.weight is {perceptual['weight']} but "
            "train.perceptual.weights_file is not set: give the path of a torchvision vgg19 "
            "state dict (SciSR never downloads weights), or set train.perceptual.weight: 0"
        )
    return {**settings, "scale": config["scale"], "seed": config["seed"]}


TRAIN_SETTINGS = {model: _train_settings(model) for model in MODELS}


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(ALL_MODELS),
    trained="|".join(MODELS),


def get_code(script):
    """Library files the script imports, followed with ast: editing one reruns its jobs."""
    return [str(path) for path in code_files(Path(workflow.basedir) / script, SRC)]


def get_source(wildcards):
    """The `source` block of a dataset."""
    return config["datasets"][wildcards.dataset]["source"]


def get_dataset(wildcards):
    """The config block of a dataset."""
    return config["datasets"][wildcards.dataset]


def get_train_split(wildcards):
    """Train and val split folders of the dataset a model learns from."""
    data = config["models"][wildcards.trained]["data"]
    return {
        "train": f"results/split/{data}/train",
        "val": f"results/split/{data}/val",
    }


def get_perceptual_weights(wildcards):
    """The VGG19 weights file of the perceptual loss, when the model uses one."""
    perceptual = TRAIN_SETTINGS[wildcards.trained]["perceptual"]
    return [perceptual["weights_file"]] if perceptual["weight"] > 0 else []


def get_train_settings(wildcards):
    """Merged, validated training settings of a model."""
    return TRAIN_SETTINGS[wildcards.trained]


def get_train_gpus(wildcards):
    """GPUs of a training job: compute.gpus (per process) x the model's train.gpus (processes)."""
    return config["compute"]["gpus"] * TRAIN_SETTINGS[wildcards.trained]["gpus"]


def get_model_files(wildcards):
    """The trained model a prediction needs; nothing for the bicubic baseline."""
    if wildcards.model == BASELINE:
        return []
    return [
        f"results/models/{wildcards.model}/generator.pt",
        f"results/models/{wildcards.model}/model.yaml",
    ]


def get_scores():
    """Score tables of every model on every evaluated dataset."""
    return expand(
        "results/score/{model}/{dataset}.tsv", model=ALL_MODELS, dataset=EVALUATE
    )


def get_report_inputs():
    """Everything the report reads, by kind."""
    return {
        "scores": get_scores(),
        "histories": expand("results/models/{model}/history.tsv", model=MODELS),
        "cards": expand("results/models/{model}/model.yaml", model=MODELS),
        "test": expand("results/split/{dataset}/test", dataset=EVALUATE),
        "predictions": expand(
            "results/infer/{model}/{dataset}", model=ALL_MODELS, dataset=EVALUATE
        ),
    }


def get_final_output():
    """The default target: the report (which pulls in every phase)."""
    return ["results/report/index.html", "results/report/summary.tsv"]
