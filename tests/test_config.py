"""scisr.config: the workflow's config read once (merge, validation, skipped models, settings per model, folds)."""

from __future__ import annotations

import copy
import os
import shutil

import pytest
import yaml
from conftest import ROOT

from scisr import config as study_config
from scisr.config import load_study, merge, schema_default, skipped_models

CONFIG = ROOT / "config"


def default_config() -> dict:
    return yaml.safe_load((CONFIG / "config.yaml").read_text())


def study(overrides: dict | None = None, conda: bool = True) -> study_config.Study:
    """The study of config.yaml with `overrides` deep-merged over it (as a user's --configfile is)."""
    return load_study(merge(default_config(), overrides or {}), CONFIG, conda=conda)


def test_merge_is_recursive_and_copies() -> None:
    base = {"train": {"pixel": {"iterations": 500, "lr": 5e-4}, "gpus": 1}, "tags": [1]}
    override = {"train": {"pixel": {"iterations": 160}}, "tags": [2], "new": {"a": 1}}
    merged = merge(base, override)
    assert merged == {"train": {"pixel": {"iterations": 160, "lr": 5e-4}, "gpus": 1}, "tags": [2], "new": {"a": 1}}
    assert base["train"]["pixel"]["iterations"] == 500  # neither input is modified
    merged["new"]["a"] = 2
    assert override["new"]["a"] == 1
    assert merge({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}  # a mapping replaces a plain value


def test_the_default_config_fills_schema_defaults_and_names_the_study() -> None:
    s = study()
    assert s.config["infer"] == {"tile": schema_default("infer.tile"), "overlap": schema_default("infer.overlap")}
    assert s.datasets == ["astro", "generic", "mri"]
    assert s.imported == ["pretrained"]
    assert s.trained == ["astro", "astro_ft", "generic", "mri", "mri_ft"]
    assert s.all_models[0] == study_config.BASELINE == "bicubic"
    assert s.budgets == [125, 250, 500] and s.skipped == {}


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"infer": {"tile": 4}}, "infer.tile: 4 is less than the minimum of 8"),
        ({"datasets": {"mri": {"normalise": {}}}}, "datasets.mri: Additional properties"),
        ({"infer": {"tile": 64, "overlap": 64}}, "infer.overlap"),
        ({"models": {"mri": {"data": "nowhere"}}}, "models.mri.data"),
        ({"evaluate": ["mri", "nowhere"]}, "evaluate"),
        ({"models": {"mri": {"train": {"patch_size": 50}}}}, "models.mri.train.patch_size"),
        ({"models": {"mri_ft": {"train": {"generator": {"channels": 64}}}}}, "models.mri_ft.train.generator"),
        (
            {"datasets": {"mri": {"split": {"fractions": {"train": 0.5, "val": 0.1, "test": 0.1}}}}},
            "datasets.mri.split.fractions",
        ),
    ],
)
def test_a_bad_config_is_refused_naming_the_key(override: dict, named: str) -> None:
    with pytest.raises(ValueError) as error:
        study(override)
    assert named in str(error.value)


def test_a_foreign_source_key_is_dropped_with_a_note_and_a_typo_still_refused(tmp_path) -> None:
    s = study({"datasets": {"mri": {"source": {"kind": "local", "path": str(tmp_path), "patterns": ["*.dcm"]}}}})
    assert "set" not in s.config["datasets"]["mri"]["source"]
    assert any(note.startswith("datasets.mri.source is kind local; dropped set") for note in s.notes)
    with pytest.raises(ValueError, match="pattern"):
        study({"datasets": {"mri": {"source": {"kind": "local", "path": str(tmp_path), "pattern": ["*.dcm"]}}}})


def test_a_model_is_skipped_with_its_reason_and_so_are_models_fine_tuned_from_it(monkeypatch) -> None:
    models = {
        "pretrained": {"import": "realesrgan-x4plus"},
        "mri_ftp": {"data": "mri", "init": "pretrained"},
        "mri_ftp2": {"data": "mri", "init": "mri_ftp"},
        "mri": {"data": "mri"},
    }
    monkeypatch.setattr(study_config.packaged, "unavailable", lambda name: f"{name} is not installed")
    assert skipped_models(models, conda=False) == {
        "mri_ftp": "its init model pretrained is skipped",
        "mri_ftp2": "its init model mri_ftp is skipped",
        "pretrained": "realesrgan-x4plus is not installed",
    }
    assert skipped_models(models, conda=True) == {}  # the rule's conda env installs the package
    assert study_config.uses_conda(["CONDA"]) and not study_config.uses_conda([])
    s = study(conda=False)
    assert "pretrained" not in s.models and "pretrained" in s.skipped
    assert "pretrained: skipped \u2014 realesrgan-x4plus is not installed" in s.notes


def test_settings_per_model_merge_train_finetune_and_the_models_own() -> None:
    s = study({"models": {"mri": {"train": {"pixel": {"iterations": 42}}}}})
    mri, mri_ft, astro = (s.train_settings[m] for m in ("mri", "mri_ft", "astro"))
    assert mri["pixel"]["iterations"] == 42 and astro["pixel"]["iterations"] == 500
    assert mri_ft["pixel"]["iterations"] == 160 and mri_ft["gan"]["iterations"] == 10  # `finetune`
    assert mri_ft["pixel"]["lr"] == astro["pixel"]["lr"]  # what finetune leaves out comes from `train`
    assert mri["generator"]["channels"] == 32 and "gpus" in mri  # train.schema.yaml's defaults filled in
    assert mri["scale"] == 4 and mri["seed"] == 0
    assert "pretrained" not in s.train_settings
    assert s.config["train"]["pixel"]["iterations"] == 500  # the config itself is not changed by the merge


def test_folds_cross_validate_domains_and_keep_the_generic_photographs_to_one_holdout() -> None:
    s = study({"study": {"folds": 5}})
    assert s.folds == 5
    assert [s.dataset_folds(d) for d in ("generic", "mri", "astro")] == [1, 5, 5]
    assert s.test_folds("mri") == [1, 2, 3, 4, 5] and s.test_folds("generic") == [1]
    assert [s.model_folds(m) for m in ("generic", "mri", "mri_ft", "pretrained")] == [1, 5, 5, 1]
    assert s.model_dir("mri", "3") == "results/models/mri/fold3"  # never saw test fold 3
    assert s.model_dir("generic", 3) == "results/models/generic/fold1"  # its one instance
    assert s.model_dir("pretrained", 3) == "results/models/pretrained"
    assert study().dataset_folds("mri") == 1  # the default: a single holdout


def test_a_workflow_running_another_checkouts_library_is_told_so(tmp_path) -> None:
    assert study_config.library_note(ROOT) is None
    note = study_config.library_note(tmp_path)
    assert str(ROOT / "src") in note and str(tmp_path / "src") in note and "pip install -e" in note


def test_schema_default_reads_the_schema_and_names_a_missing_key() -> None:
    assert schema_default("infer.tile") == 128 and schema_default("infer.overlap") == 16
    assert schema_default("study.folds") == 1
    assert "LOCALIZER" in schema_default("datasets.*.frames.exclude")  # through the dataset block's $ref
    with pytest.raises(KeyError, match=r"infer.tiles"):
        schema_default("infer.tiles")
    value = schema_default("study.budgets")
    value.append(1)  # a copy: the cached schema is not changed
    assert schema_default("study.budgets") != value


def leaves(tree: dict, path: tuple = ()) -> list[tuple]:
    """Key paths of every leaf (a value that is not a non-empty mapping)."""
    out = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out += leaves(value, (*path, key))
        else:
            out.append((*path, key))
    return out


def without(tree: dict, path: tuple) -> dict:
    tree = copy.deepcopy(tree)
    node = tree
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return tree


def effective(base: dict, user: dict) -> tuple | None:
    """What the workflow reads from `user` merged over `base`: the filled config and every model's settings."""
    try:
        s = load_study(merge(base, user), CONFIG, conda=True)
    except ValueError:
        return None  # the key is needed for a valid config
    # training blocks count through the settings each model gets (the raw blocks are merged, not read)
    rest = {key: value for key, value in s.config.items() if key not in ("train", "finetune")}
    rest["models"] = {name: {k: v for k, v in model.items() if k != "train"} for name, model in rest["models"].items()}
    return rest, s.train_settings


@pytest.mark.slow  # validates the config once per key it holds: 8-13 s each
@pytest.mark.parametrize(("name", "base"), [("config.yaml", None), ("study.yaml", "config.yaml")])
def test_a_config_file_states_only_what_differs_from_the_schemas_defaults(name: str, base: str | None) -> None:
    """A key whose removal changes nothing the workflow reads restates a default: config.yaml over the schema's
    defaults; study.yaml over config.yaml, except the keys config.yaml sets, which study.yaml restates on purpose
    (it is self-contained: tests/test_workflow_config.py), so only its other keys must differ from the schema's."""
    user = yaml.safe_load((CONFIG / name).read_text())
    under = yaml.safe_load((CONFIG / base).read_text()) if base else {}
    for dataset, spec in under.get("datasets", {}).items():  # a source of another kind drops the base's keys
        if user["datasets"][dataset]["source"]["kind"] != spec["source"]["kind"]:
            spec["source"] = {"kind": spec["source"]["kind"]}
    own = [path for path in leaves(user) if path not in set(leaves(under))]
    reference = effective(under, user)
    restated = [".".join(map(str, path)) for path in own if effective(under, without(user, path)) == reference]
    assert not restated, f"config/{name} restates the schema's defaults (remove these keys): {restated}"


def test_the_schemas_prose_states_the_degradations_own_defaults() -> None:
    """degradation_options take no schema `default:` (a default would be passed to every degradation, and each
    accepts only its own options), so their defaults are the functions' and the schema's prose must match them."""
    import inspect
    import re

    from scisr.prepare import degrade

    schema = yaml.safe_load((CONFIG / "schema.yaml").read_text())
    options = schema["$defs"]["dataset"]["properties"]["split"]["properties"]["degradation_options"]["properties"]
    checked = 0
    for name, spec in options.items():
        kind, _, prose = spec["description"].partition(": ")
        parameter = inspect.signature(degrade.DEGRADATIONS[kind]).parameters[name]
        value = parameter.default
        if value is None:
            assert re.search(r"default|omitted", prose), (name, prose)
        elif isinstance(value, str):
            assert re.search(rf"`{value}`[^`]*\(default\)", prose), (name, value, prose)
        else:
            assert f"(default {value:g}" in prose, (name, value, prose)
        checked += 1
    assert checked == len(options) >= 7


def test_the_librarys_own_fallbacks_equal_the_schemas_defaults() -> None:
    """scisr.io imports nothing of ours, so its limits are constants that must be the schema's (the `scisr` command
    reads the schema itself); the frame rules read theirs from the schema."""
    from scisr.extract import FrameRules
    from scisr.io.isolated import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S
    from scisr.io.limits import DEFAULT_MAX_BYTES

    assert schema_default("extract.max_image_bytes") == DEFAULT_MAX_BYTES
    assert schema_default("extract.reader_memory_mb") == DEFAULT_MEMORY_MB
    assert schema_default("extract.reader_timeout_s") == DEFAULT_TIMEOUT_S
    rules = FrameRules()
    for key in ("pixel_data", "exclude", "components"):
        assert list(getattr(rules, key)) == schema_default(f"datasets.*.frames.{key}"), key


@pytest.mark.slow
def test_an_installed_wheel_carries_the_schemas_the_scisr_command_reads(tmp_path) -> None:
    """`pip install scisr` (not editable, away from the checkout) still finds the defaults: the schemas ship inside
    the package as copies of config/'s files, so the command's tile size is the study's."""
    import subprocess
    import sys

    wheel_dir, target, source = tmp_path / "wheel", tmp_path / "site", tmp_path / "source"
    for part in ("src", "config"):  # a copy (links kept as links): building writes build/ beside pyproject.toml
        shutil.copytree(ROOT / part, source / part, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(wheel_dir),
        str(source),
    ]
    assert subprocess.run(build, capture_output=True, timeout=300, cwd=tmp_path).returncode == 0
    wheel = next(wheel_dir.glob("scisr-*.whl"))
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)]
    assert subprocess.run(install, capture_output=True, timeout=300).returncode == 0
    for name in ("schema.yaml", "train.schema.yaml"):
        copy = target / "scisr" / name
        assert not copy.is_symlink() and copy.read_bytes() == (ROOT / "config" / name).read_bytes()
    probe = "import scisr.config as c; print(c.__file__); print(c.schema_default('infer.tile'))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    where, tile = result.stdout.split()
    assert where.startswith(str(target)) and int(tile) == schema_default("infer.tile")
