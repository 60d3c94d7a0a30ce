# The study's names and settings (scisr.config, read once at parse time), wildcard constraints and the input
# functions (get_*) of the phases. No heavy imports: parsing stays fast. Jobs import the installed scisr: the
# venv's editable install, or in each rule's conda env the one its post-deploy script installs from here.
import os
import sys
from pathlib import Path

from scisr import checks, packaged
from scisr.codeinputs import code_inputs
from scisr.config import BASELINE, load_study, uses_conda

# set, not read (so no envvars: directive): envs/*.post-deploy.sh installs the library from this folder
os.environ.update(SCISR_SOURCE=workflow.basedir)
DEPLOYMENT = getattr(workflow.deployment_settings, "deployment_method", ())
STUDY = load_study(config, Path(workflow.basedir) / "config", uses_conda(DEPLOYMENT))
for _note in STUDY.notes:
    print(f"note: {_note}", file=sys.stderr)

DATASETS = STUDY.datasets
EVALUATE = STUDY.evaluate
GENERIC = STUDY.generic
SKIPPED = STUDY.skipped
MODELS = STUDY.models
IMPORTED = STUDY.imported
TRAINED = STUDY.trained
ALL_MODELS = STUDY.all_models
TRAIN_SETTINGS = STUDY.train_settings
FOLDS = STUDY.folds
dataset_folds = STUDY.dataset_folds
model_folds = STUDY.model_folds
model_dir = STUDY.model_dir
test_folds = STUDY.test_folds
BUDGETS = STUDY.budgets
get_budget_models = STUDY.budget_models
get_field_datasets = STUDY.field_datasets


def _alternatives(names):
    """A wildcard regex matching exactly these names (and nothing when there are none)."""
    return "|".join(names) or "(?!)"


wildcard_constraints:
    dataset="|".join(DATASETS),
    model="|".join(ALL_MODELS),
    trained=_alternatives(TRAINED),
    imported=_alternatives(IMPORTED),
    fold=r"\d+",
    unit=r"\d+",


def get_code(script):
    """Library files the script imports, followed with ast (editing one reruns its jobs), relative paths."""
    base = Path(workflow.basedir)
    return code_inputs(base / script, base / "src")


def get_source(wildcards):
    """The `source` block of a dataset."""
    return config["datasets"][wildcards.dataset]["source"]


def get_dataset(wildcards):
    """The config block of a dataset."""
    return config["datasets"][wildcards.dataset]


DATA_UNITS = config["compute"]["data_units"]


def data_units(pattern):
    """An input function: `pattern` for every work unit 1..compute.data_units of the job's dataset."""
    return lambda wildcards: [
        pattern.format(dataset=wildcards.dataset, unit=u)
        for u in range(1, DATA_UNITS + 1)
    ]


SPLITS = ("train", "val", "test")


def split_parts(folds):
    """The split rule's part folders of `folds` folds: {fold: {train, val, test: path}} ({dataset} left open)."""
    return {
        fold: {part: f"results/split/{{dataset}}/fold{fold}/{part}" for part in SPLITS}
        for fold in range(1, folds + 1)
    }


def split_outputs(folds):
    """split_parts as the rule's list of directory outputs."""
    return [
        directory(p) for parts in split_parts(folds).values() for p in parts.values()
    ]


def get_split_parts(wildcards):
    """The split rule's part folders of one dataset (the same paths as its outputs)."""
    return {
        fold: {
            part: path.format(dataset=wildcards.dataset) for part, path in parts.items()
        }
        for fold, parts in split_parts(dataset_folds(wildcards.dataset)).items()
    }


def get_train_data(wildcards):
    """The name of the dataset a model learns from."""
    return config["models"][wildcards.trained]["data"]


def get_train_split(wildcards):
    """Train and val split folders of the model's fold of the dataset it learns from, and its training store."""
    data = get_train_data(wildcards)
    return {
        "train": f"results/split/{data}/fold{wildcards.fold}/train",
        "val": f"results/split/{data}/fold{wildcards.fold}/val",
        "store": f"results/split/{data}/store",
    }


def get_train_normalization(wildcards):
    """The normalize settings of the dataset a model learns from (recorded in its model card)."""
    return config["datasets"][get_train_data(wildcards)]["normalize"]


def get_train_folds(wildcards):
    """How many folds the dataset a model learns from has (the model card records `fold` of this)."""
    return dataset_folds(get_train_data(wildcards))


def get_checkpoint_dir(wildcards):
    """Where a model's resumable checkpoint lives: outside the rule's outputs, which Snakemake deletes."""
    return f"results/checkpoints/{wildcards.trained}/fold{wildcards.fold}"


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
    """The generator and card a fine-tuned model starts from (its `init` model's instance for this fold);
    nothing for training from scratch."""
    init = config["models"][wildcards.trained].get("init")
    if not init:
        return {}
    folder = model_dir(init, wildcards.fold)
    return {
        "init_generator": f"{folder}/generator.pt",
        "init_card": f"{folder}/model.yaml",
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
    """The model instance a prediction on test fold {fold} needs (generator, card); nothing for bicubic."""
    if wildcards.model == BASELINE:
        return {}
    folder = model_dir(wildcards.model, wildcards.fold)
    return {"generator": f"{folder}/generator.pt", "card": f"{folder}/model.yaml"}


def get_final_output():
    """The default target: the report (which pulls in every phase)."""
    return ["results/report/index.html", "results/report/summary.tsv"]


# --- the budget crossover and field metrics --------------------------------------------------------


def _note_capped_budgets():
    """Say which budgets a model's schedule caps (its snapshot is then the final model)."""
    for model in TRAINED:
        total = checks.total_iterations(TRAIN_SETTINGS[model])
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


def get_budget_snapshots(wildcards):
    """The budget snapshots of the model instance that scores test fold {fold}, one per budget."""
    folder = model_dir(wildcards.trained, wildcards.fold)
    return [f"{folder}/budget/{budget}.pt" for budget in BUDGETS]


def get_budget_card(wildcards):
    """The model card of the instance whose snapshots score test fold {fold}."""
    return f"{model_dir(wildcards.trained, wildcards.fold)}/model.yaml"


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
