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

from scisr import checks, packaged
from scisr.codeinputs import code_files

DATASETS = sorted(config["datasets"])
BASELINE = "bicubic"
EVALUATE = list(config["evaluate"])
GENERIC = config["generic_model"]


def _check_names():
    """Cross-key checks the schema cannot express (scisr.checks, shared with the library)."""
    problems = checks.config_problems(config)
    if problems:
        raise ValueError("config: " + "; ".join(problems))


_check_names()


def _conda_deploys():
    """Whether jobs run in the rules' conda envs (envs/torch.yaml installs the packaged weights there)."""
    methods = getattr(workflow.deployment_settings, "deployment_method", ())
    return any(
        getattr(method, "name", str(method)).upper() == "CONDA" for method in methods
    )


def _skipped_models():
    """Models left out, with the reason: packaged weights whose package is not installed, and models
    fine-tuned from a model left out. Checked without importing the package (scisr.packaged).
    """
    skipped = {}
    for name, spec in config["models"].items():
        source = spec.get("import")
        if (
            isinstance(source, str)
            and source in packaged.PACKAGED
            and not _conda_deploys()
        ):
            reason = packaged.unavailable(source)
            if reason:
                skipped[name] = reason
    added = True
    while added:
        added = False
        for name, spec in config["models"].items():
            if name not in skipped and spec.get("init") in skipped:
                skipped[name] = f"its init model {spec['init']} is skipped"
                added = True
    for name, reason in sorted(skipped.items()):
        print(f"note: {name}: skipped \u2014 {reason}", file=sys.stderr)
    return skipped


SKIPPED = _skipped_models()
MODELS = sorted(m for m in config["models"] if m not in SKIPPED)
IMPORTED = [m for m in MODELS if "import" in config["models"][m]]
TRAINED = [m for m in MODELS if m not in IMPORTED]
ALL_MODELS = [BASELINE] + MODELS


def _deep_merge(base, override):
    """Return `base` updated recursively with `override` (neither is modified)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _train_base(model):
    """The settings a model's own overrides merge over: `train`, with `finetune` merged in for a model with `init`."""
    if config["models"][model].get("init"):
        return _deep_merge(config["train"], config["finetune"])
    return config["train"]


def _train_settings(model):
    """Validated training settings of one model: global `train` + its overrides."""
    settings = _deep_merge(_train_base(model), config["models"][model]["train"])
    validate(settings, "../config/train.schema.yaml")
    problems = checks.train_problems(
        settings, config["scale"], prefix=f"models.{model}.train."
    )
    if problems:
        raise ValueError("config: " + "; ".join(problems))
    return {**settings, "scale": config["scale"], "seed": config["seed"]}


TRAIN_SETTINGS = {model: _train_settings(model) for model in TRAINED}


def _check_inits():
    """Fine-tuning: `finetune` is valid, and each model's generator settings equal those of its init model
    (an imported init model's card is checked when training starts)."""
    validate(
        _deep_merge(config["train"], config["finetune"]), "../config/train.schema.yaml"
    )
    problems = []
    for model in TRAINED:
        init = config["models"][model].get("init")
        if init:
            init_generator = (
                TRAIN_SETTINGS[init]["generator"] if init in TRAIN_SETTINGS else None
            )
            problems += checks.init_problems(
                model, TRAIN_SETTINGS[model]["generator"], init, init_generator
            )
    if problems:
        raise ValueError("config: " + "; ".join(problems))


_check_inits()


def _alternatives(names):
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(names) or "(?!)"


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(ALL_MODELS),
    trained=_alternatives(TRAINED),
    imported=_alternatives(IMPORTED),


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


def get_train_init(wildcards):
    """The generator and card a fine-tuned model starts from (its `init` model's); nothing for training from scratch."""
    init = config["models"][wildcards.trained].get("init")
    if not init:
        return {}
    return {
        "init_generator": f"results/models/{init}/generator.pt",
        "init_card": f"results/models/{init}/model.yaml",
    }


def get_import_source(wildcards):
    """What an imported model is converted from: a packaged model name, or a list of weight file paths."""
    source = config["models"][wildcards.imported]["import"]
    return source if isinstance(source, str) else list(source)


def get_import_files(wildcards):
    """The weight files an imported model reads (inputs, so a changed file reimports); none for a packaged
    model, whose files are found in its installed package and checked against their pinned sha256.
    """
    source = get_import_source(wildcards)
    if isinstance(source, str):
        return [] if source in packaged.PACKAGED else [source]
    return source


def get_import_licence(wildcards):
    """The licence an imported model's card records (null: the packaged model's, or unknown)."""
    return config["models"][wildcards.imported]["licence"]


def get_model_files(wildcards):
    """The model a prediction needs (generator, card), trained or imported; nothing for the bicubic baseline."""
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
    """Training history of every trained model (imported ones have none): {model: path}."""
    return {model: f"results/models/{model}/history.tsv" for model in TRAINED}


def get_report_cards():
    """Model card of every model, trained or imported: {model: path}."""
    return {model: f"results/models/{model}/model.yaml" for model in MODELS}


def get_report_skipped():
    """Models of the config left out of this run, with the reason: {model: reason}."""
    return dict(SKIPPED)


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


# --- the budget crossover, field metrics and the report's cost inputs ------------------------------

BUDGETS = sorted(config["study"]["budgets"])


def _model_iterations(model):
    """Training iterations of a model's schedule (both stages)."""
    settings = TRAIN_SETTINGS[model]
    return settings["pixel"]["iterations"] + settings["gan"]["iterations"]


def _note_capped_budgets():
    """Say which budgets a model's schedule caps (its snapshot is then the final model)."""
    for model in TRAINED:
        total = _model_iterations(model)
        capped = [b for b in BUDGETS if b > total]
        if capped:
            print(
                f"note: study.budgets {capped} exceed models.{model}'s schedule of {total} iterations "
                "(train.pixel.iterations + train.gan.iterations): those snapshots are its final model",
                file=sys.stderr,
            )


_note_capped_budgets()


wildcard_constraints:
    iterations=r"\d+",


def get_budget_snapshots():
    """The train rule's snapshot outputs, one per budget (the {trained} wildcard left open)."""
    return expand(
        "results/models/{{trained}}/budget/{iterations}.pt", iterations=BUDGETS
    )


def get_budget_models():
    """Models of the budget crossover per domain dataset: {dataset: [generic, its own models]}."""
    if GENERIC not in TRAINED:
        return {}
    out = {}
    for dataset in EVALUATE:
        own = [
            m
            for m in TRAINED
            if m != GENERIC and config["models"][m]["data"] == dataset
        ]
        if own:
            out[dataset] = [GENERIC] + own
    return out


def get_report_budget_scores():
    """Score table of every budget snapshot in the crossover: {dataset: {model: {budget: path}}}."""
    return {
        dataset: {
            model: {
                budget: f"results/budget/score/{model}/{budget}/{dataset}.tsv"
                for budget in BUDGETS
            }
            for model in models
        }
        for dataset, models in get_budget_models().items()
    }


def get_report_budget_tables():
    """budgets.tsv (iteration and training seconds per snapshot) of every crossover model: {model: path}."""
    models = sorted({m for ms in get_budget_models().values() for m in ms})
    return {m: f"results/models/{m}/budgets.tsv" for m in models} if BUDGETS else {}


def get_field(wildcards):
    """The field whose metrics apply to a dataset (none, mri, astronomy)."""
    return config["datasets"][wildcards.dataset]["field"]


def get_field_inputs(wildcards):
    """What a field score needs besides predictions and HR: astronomy maps tiles back to normalization params."""
    if get_field(wildcards) != "astronomy":
        return {}
    return {
        "params": f"results/normalize/{wildcards.dataset}/params.tsv",
        "split": f"results/split/{wildcards.dataset}/split.tsv",
    }


def get_field_datasets():
    """Evaluated datasets with field metrics: {dataset: field}."""
    fields = {d: config["datasets"][d]["field"] for d in EVALUATE}
    return {d: f for d, f in fields.items() if f != "none"}


def get_report_field_scores():
    """Field-metric table of every model on every field dataset: {dataset: {model: path}}."""
    return {
        dataset: {
            model: f"results/score/{model}/{dataset}.field.tsv" for model in ALL_MODELS
        }
        for dataset in get_field_datasets()
    }


def get_report_benchmarks():
    """Benchmark files of training and of inference on the evaluated test sets: {train|infer: {...}}."""
    return {
        "train": {m: f"benchmarks/train/{m}.tsv" for m in TRAINED},
        "infer": {
            m: {d: f"benchmarks/infer/{m}/{d}.tsv" for d in EVALUATE}
            for m in ALL_MODELS
        },
    }


def get_report_extra_inputs():
    """The report's inputs for the crossover, the field metrics and the cost table, as flat lists."""
    bench = get_report_benchmarks()
    return {
        "budget_scores": [
            p
            for by_model in get_report_budget_scores().values()
            for by_budget in by_model.values()
            for p in by_budget.values()
        ],
        "budget_tables": list(get_report_budget_tables().values()),
        "field_scores": [
            p
            for by_model in get_report_field_scores().values()
            for p in by_model.values()
        ],
        "train_benchmarks": list(bench["train"].values()),
        "infer_benchmarks": [
            p for by_d in bench["infer"].values() for p in by_d.values()
        ],
    }


def get_report_budget_figures():
    """The budget-curve figure of every crossover domain: {dataset: path} (none without study.budgets)."""
    if not BUDGETS:
        return {}
    return {d: f"results/report/budget_{d}.png" for d in get_budget_models()}
