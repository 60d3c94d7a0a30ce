"""The workflow's configuration read once: repaired, validated, and turned into the study's names and folds.

`rules/common.smk` calls `load_study(config, ...)` at parse time and keeps only wildcard constraints and input
functions; everything decided from the config alone lives here, testable without Snakemake. `schema_default`
(from `scisr.schema`) gives the library and the `scisr` command the defaults written in config/schema.yaml, so each
default is stated once. Torch-free and cheap to import: jsonschema and Snakemake are imported only by the functions
that use them.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from scisr import checks, packaged
from scisr.folds import instance_fold
from scisr.schema import CONFIG_DIR, SCHEMA, TRAIN_SCHEMA, load_schema, schema_default

__all__ = [
    "BASELINE",
    "CONFIG_DIR",
    "Study",
    "drop_foreign_source_keys",
    "load_study",
    "merge",
    "schema_default",
    "skipped_models",
    "train_settings",
    "uses_conda",
]

BASELINE = "bicubic"


def merge(base: Mapping, override: Mapping) -> dict:
    """`base` updated recursively with `override`, neither modified (Snakemake's own config merge)."""
    from snakemake.utils import update_config

    merged = copy.deepcopy(dict(base))
    update_config(merged, copy.deepcopy(dict(override)))
    return merged


@functools.cache
def _validator(path: Path):
    """A JSON-schema validator for one schema file that fills in defaults, as snakemake.utils.validate does (which
    re-reads the file on every call: 0.12 s each, most of a parse), built once per process."""
    from jsonschema import Draft202012Validator, validators

    check_properties = Draft202012Validator.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, schema):
        for name, subschema in properties.items():
            if "default" in subschema and isinstance(instance, dict):
                instance.setdefault(name, copy.deepcopy(subschema["default"]))  # a copy: no block shares a default
        yield from check_properties(validator, properties, instance, schema)

    filling = validators.extend(Draft202012Validator, {"properties": fill_defaults})
    return filling(load_schema(path))


def validate(data: dict, schema: Path) -> None:
    """Validate `data` against a schema file, filling in its defaults; a ValueError names the first bad key."""
    from jsonschema import ValidationError

    try:
        _validator(Path(schema).resolve()).validate(data)
    except ValidationError as error:
        key = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise ValueError(f"config: {key}: {error.message} ({Path(schema).name})") from None


def _refuse(problems: list[str]) -> None:
    if problems:
        raise ValueError("config: " + "; ".join(problems))


def drop_foreign_source_keys(config: dict, schema: Path) -> list[str]:
    """Drop from each dataset's source the keys of other kinds than its own; return a note per dataset changed.

    `--configfile` files are deep-merged over config/config.yaml, so a user file that switches a dataset to another
    kind (e.g. `source: {kind: local, path: ...}`) inherits the default's keys (`set: mri`). Keys that the schema
    declares only for other kinds are removed; keys no kind declares stay, so validation still rejects typos.
    """
    defs = load_schema(Path(schema).resolve())["$defs"]
    kinds = {
        name.removeprefix("source_"): set(spec["properties"])
        for name, spec in defs.items()
        if name.startswith("source_")
    }
    notes = []
    for name, dataset in (config.get("datasets") or {}).items():
        source = dataset.get("source") if isinstance(dataset, dict) else None
        if not isinstance(source, dict) or source.get("kind") not in kinds:
            continue
        other = set().union(*kinds.values()) - kinds[source["kind"]]
        dropped = sorted(key for key in source if key in other)
        for key in dropped:
            del source[key]
        if dropped:
            notes.append(
                f"datasets.{name}.source is kind {source['kind']}; dropped {', '.join(dropped)} "
                "(keys of other kinds, inherited from a merged config file)"
            )
    return notes


def uses_conda(deployment_methods) -> bool:
    """Whether jobs run in the rules' conda envs, from Snakemake's deployment methods (--sdm)."""
    return any(getattr(method, "name", str(method)).upper() == "CONDA" for method in deployment_methods)


def skipped_models(models: Mapping[str, Mapping], conda: bool) -> dict[str, str]:
    """Models left out, with the reason: packaged weights whose package is not installed (checked without importing
    it; under `conda` the rule's env installs it), and models fine-tuned from a model left out."""
    skipped = {}
    for name, spec in models.items():
        source = spec.get("import")
        if isinstance(source, str) and source in packaged.PACKAGED and not conda:
            reason = packaged.unavailable(source)
            if reason:
                skipped[name] = reason
    added = True
    while added:
        added = False
        for name, spec in models.items():
            if name not in skipped and spec.get("init") in skipped:
                skipped[name] = f"its init model {spec['init']} is skipped"
                added = True
    return dict(sorted(skipped.items()))


def train_base(config: Mapping, model: str) -> dict:
    """The settings a model's own overrides merge over: `train`, with `finetune` merged in for a model with `init`."""
    if config["models"][model].get("init"):
        return merge(config["train"], config["finetune"])
    return copy.deepcopy(config["train"])


def train_settings(config: Mapping, model: str, config_dir: Path = CONFIG_DIR) -> dict:
    """Validated training settings of one model: `train` (+ `finetune`) + its own overrides, with scale and seed."""
    settings = merge(train_base(config, model), config["models"][model]["train"])
    validate(settings, Path(config_dir) / TRAIN_SCHEMA)
    _refuse(checks.train_problems(settings, config["scale"], prefix=f"models.{model}.train."))
    return {**settings, "scale": config["scale"], "seed": config["seed"]}


@dataclass(frozen=True)
class Study:
    """What the workflow decides from a validated config: which models run, their settings, and the folds."""

    config: Mapping
    skipped: dict[str, str]
    train_settings: dict[str, dict] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def datasets(self) -> list[str]:
        return sorted(self.config["datasets"])

    @property
    def evaluate(self) -> list[str]:
        return list(self.config["evaluate"])

    @property
    def generic(self) -> str:
        return self.config["generic_model"]

    @property
    def models(self) -> list[str]:
        """Models that run (configured and not skipped), sorted."""
        return sorted(m for m in self.config["models"] if m not in self.skipped)

    @property
    def imported(self) -> list[str]:
        return [m for m in self.models if "import" in self.config["models"][m]]

    @property
    def trained(self) -> list[str]:
        return [m for m in self.models if "import" not in self.config["models"][m]]

    @property
    def all_models(self) -> list[str]:
        """The baseline and every model that runs."""
        return [BASELINE, *self.models]

    @property
    def folds(self) -> int:
        return self.config["study"]["folds"]

    @property
    def budgets(self) -> list[int]:
        return sorted(self.config["study"]["budgets"])

    @property
    def holdout_data(self) -> set[str]:
        """Datasets kept to a single holdout: the generic model's photographs (it is trained once)."""
        if self.generic in self.trained:
            return {self.config["models"][self.generic]["data"]}
        return set()

    def dataset_folds(self, dataset: str) -> int:
        """Folds of a dataset: study.folds, or 1 (a single holdout) for the data the generic model learns from."""
        return 1 if dataset in self.holdout_data else self.folds

    def test_folds(self, dataset: str) -> list[int]:
        """The test folds of a dataset: 1..k."""
        return list(range(1, self.dataset_folds(dataset) + 1))

    def model_folds(self, model: str) -> int:
        """Instances of a model: one per fold of the dataset it learns from; one when imported."""
        if model in self.trained:
            return self.dataset_folds(self.config["models"][model]["data"])
        return 1

    def budget_models(self) -> dict[str, list[str]]:
        """Models of the budget crossover per evaluated dataset: {dataset: [generic, the dataset's own models]}."""
        if self.generic not in self.trained:
            return {}
        models = self.config["models"]
        out = {}
        for dataset in self.evaluate:
            own = [m for m in self.trained if m != self.generic and models[m]["data"] == dataset]
            if own:
                out[dataset] = [self.generic, *own]
        return out

    def field_datasets(self) -> dict[str, str]:
        """Evaluated datasets with field metrics: {dataset: field}."""
        fields = {d: self.config["datasets"][d]["field"] for d in self.evaluate}
        return {d: f for d, f in fields.items() if f != "none"}

    def model_dir(self, model: str, fold: int | str) -> str:
        """The folder of the instance of `model` that scores test fold `fold` (scisr.folds.instance_fold)."""
        if model in self.imported:
            return f"results/models/{model}"
        return f"results/models/{model}/fold{instance_fold(int(fold), self.model_folds(model))}"


def _init_problems(config: Mapping, settings: Mapping[str, Mapping], trained: list[str]) -> list[str]:
    """Fine-tuning: each model's generator settings equal those of its init model (an imported init model's card
    is checked when training starts)."""
    problems = []
    for model in trained:
        init = config["models"][model].get("init")
        if init:
            init_generator = settings[init]["generator"] if init in settings else None
            problems += checks.init_problems(model, settings[model]["generator"], init, init_generator)
    return problems


def library_note(workflow_dir: str | Path) -> str | None:
    """A note when the scisr imported here is not the workflow's own src/scisr: jobs outside conda envs import the
    same installed library, so they would run other code than the code inputs track."""
    imported, own = Path(__file__).resolve().parent, (Path(workflow_dir) / "src" / "scisr").resolve()
    if imported == own:
        return None
    return (
        f"the scisr library is imported from {imported.parent}, not from this workflow's {own.parent}: jobs "
        f"outside conda envs run that code; `pip install -e {Path(workflow_dir).resolve()}` to run this one's"
    )


def load_study(config: dict, config_dir: str | Path = CONFIG_DIR, conda: bool = False) -> Study:
    """Repair, validate (filling in the schema's defaults, in place) and read a workflow config.

    `config_dir` holds schema.yaml and train.schema.yaml; `conda` says whether jobs run in the rules' conda envs
    (which install packaged weights, so those models are never skipped). Raises ValueError naming the key(s).
    """
    config_dir = Path(config_dir)
    notes = drop_foreign_source_keys(config, config_dir / SCHEMA)
    notes += filter(None, [library_note(config_dir.parent)])
    validate(config, config_dir / SCHEMA)
    _refuse(checks.config_problems(config))
    skipped = skipped_models(config["models"], conda)
    notes += [f"{name}: skipped \u2014 {reason}" for name, reason in skipped.items()]
    study = Study(config, skipped)
    settings = {model: train_settings(config, model, config_dir) for model in study.trained}
    validate(merge(config["train"], config["finetune"]), config_dir / TRAIN_SCHEMA)
    _refuse(_init_problems(config, settings, study.trained))
    return Study(config, skipped, settings, tuple(notes))
