"""A user's `--configfile` may switch a dataset to another source kind (Snakemake deep-merges it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from conftest import ROOT


def dry_run(exe: str, work: Path, *configfiles: Path) -> subprocess.CompletedProcess:
    command = [exe, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work), "--dry-run", "--cores", "1",
               "--configfile", *map(str, configfiles)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=work)


def test_configfile_can_switch_sources_to_other_kinds(snakemake_exe: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    images = tmp_path / "my_dicoms"
    images.mkdir()
    override = tmp_path / "my.yaml"
    override.write_text(yaml.safe_dump({"datasets": {
        "mri": {"source": {"kind": "local", "path": str(images), "patterns": ["*.dcm"]}},
        "astro": {"source": {"kind": "kaggle", "dataset": "abhikalpsrivastava15/space-images-category"}},
    }}))
    result = dry_run(snakemake_exe, tmp_path, tmp_path / "config" / "config.yaml", override)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "datasets.mri.source is kind local; dropped set" in output
    assert "datasets.astro.source is kind kaggle; dropped set" in output
    assert "download" in result.stdout

    # A typo is still an error: only keys that belong to another kind are dropped.
    override.write_text(yaml.safe_dump({"datasets": {"mri": {"source": {"kind": "local", "path": str(images),
                                                                         "pattern": ["*.dcm"]}}}}))
    result = dry_run(snakemake_exe, tmp_path, tmp_path / "config" / "config.yaml", override)
    assert result.returncode != 0 and "pattern" in result.stdout + result.stderr


def test_study_config_merges_over_the_default(snakemake_exe: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    result = dry_run(snakemake_exe, tmp_path, tmp_path / "config" / "config.yaml", tmp_path / "config" / "study.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
