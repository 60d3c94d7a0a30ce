"""Helpers of the workflow tests (tests/test_workflow_config.py): the tiny config's Snakemake run, a fresh working
directory, a dry run of a changed config, the repository's config files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml
from conftest import ROOT, run_snakemake
from ncnn_helpers import write_small_pretrained


def snakemake(
    exe: str, workdir: Path, *args: str, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run snakemake on this repository's Snakefile in `workdir` with the tiny config (and the small pretrained
    model of make_workdir)."""
    configs = [
        workdir / "config" / "config.yaml",
        ROOT / "tests" / "data" / "tiny.yaml",
        *([workdir / "pretrained.yaml"] if (workdir / "pretrained.yaml").exists() else []),
    ]
    return run_snakemake(exe, workdir, *args, configfiles=configs, timeout=timeout, env=env)


def make_workdir(tmp: Path, *, small_pretrained: bool = True) -> Path:
    """A fresh working directory holding a copy of the default config and a small `pretrained` model to import."""
    shutil.copytree(ROOT / "config", tmp / "config")
    if small_pretrained:
        write_small_pretrained(tmp, finetune=True)
    return tmp


def plan_with(exe: str, workdir: Path, config: dict) -> subprocess.CompletedProcess:
    """Write `config` as the working directory's config.yaml and dry-run the workflow on it."""
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return snakemake(exe, workdir, "--dry-run")


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())
