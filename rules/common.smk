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

from scisr import checks
from scisr.codeinputs import code_files

DATASETS = sorted(config["datasets"])
MODELS = sorted(config["models"])
BASELINE = "bicubic"
ALL_MODELS = [BASELINE] + MODELS
EVALUATE = list(config["evaluate"])
GENERIC = config["generic_model"]


def _check_names():
    """Cross-key checks the schema cannot express (scisr.checks, shared with the library)."""
    problems = checks.config_problems(config)
    if problems:
        raise ValueError("config: " + "; ".join(problems))


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
    problems = checks.train_problems(
        settings, config["scale"], prefix=f"models.{model}.train."
    )
    if problems:
        raise ValueError("config: " + "; ".join(problems))
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


def get_train_data(wildcards):
    """The name of the dataset a model learns from."""
    return config["models"][wildcards.trained]["data"]


def get_train_split(wildcards):
    """Train and val split folders of the dataset a model learns from."""
    data = get_train_data(wildcards)
    return {
        "train": f"results/split/{data}/train",
        "val": f"results/split/{data}/val",
    }


def get_train_normalization(wildcards):
    """The normalize settings of the dataset a model learns from (recorded in its model card)."""
    return config["datasets"][get_train_data(wildcards)]["normalize"]


def get_checkpoint_dir(wildcards):
    """Where a model's resumable checkpoint lives: outside the rule's outputs, which Snakemake deletes."""
    return f"results/checkpoints/{wildcards.trained}"


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
    """The trained model a prediction needs (generator, card); nothing for the bicubic baseline."""
    if wildcards.model == BASELINE:
        return {}
    return {
        "generator": f"results/models/{wildcards.model}/generator.pt",
        "card": f"results/models/{wildcards.model}/model.yaml",
    }


def get_report_scores():
    """Score table of every model on every evaluated dataset: {model: {dataset: path}}."""
    return {
        model: {data: f"results/score/{model}/{data}.tsv" for data in EVALUATE}
        for model in ALL_MODELS
    }


def get_report_predictions():
    """Prediction folder of every model on every evaluated dataset: {model: {dataset: path}}."""
    return {
        model: {data: f"results/infer/{model}/{data}" for data in EVALUATE}
        for model in ALL_MODELS
    }


def get_report_histories():
    """Training history of every trained model: {model: path}."""
    return {model: f"results/models/{model}/history.tsv" for model in MODELS}


def get_report_cards():
    """Model card of every trained model: {model: path}."""
    return {model: f"results/models/{model}/model.yaml" for model in MODELS}


def get_report_tests():
    """Test split part of every evaluated dataset: {dataset: path}."""
    return {data: f"results/split/{data}/test" for data in EVALUATE}


def get_report_splits():
    """Split table of every evaluated dataset (test image -> subject): {dataset: path}."""
    return {data: f"results/split/{data}/split.tsv" for data in EVALUATE}


def get_report_degradations():
    """The degradation that made each evaluated dataset's LR images: {dataset: name}."""
    return {data: config["datasets"][data]["split"]["degradation"] for data in EVALUATE}


def get_report_panels():
    """The example panel figure of every evaluated dataset: {dataset: path}."""
    return {data: f"results/report/panel_{data}.png" for data in EVALUATE}


def get_report_inputs():
    """Everything the report reads, by kind, as flat lists (the same files as the get_report_* mappings)."""
    return {
        "scores": [p for m in get_report_scores().values() for p in m.values()],
        "predictions": [
            p for m in get_report_predictions().values() for p in m.values()
        ],
        "histories": list(get_report_histories().values()),
        "cards": list(get_report_cards().values()),
        "test": list(get_report_tests().values()),
        "splits": list(get_report_splits().values()),
    }


def get_final_output():
    """The default target: the report (which pulls in every phase)."""
    return ["results/report/index.html", "results/report/summary.tsv"]
