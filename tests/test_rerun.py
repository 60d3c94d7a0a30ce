"""Rerun-on-change: after a finished tiny study, each kind of change reruns exactly what depends on it.

The workflow (Snakefile, rules, scripts, library sources, config) is copied into a temporary
folder so the tests can edit library files without touching the checkout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from ncnn_helpers import write_small_pretrained

pytestmark = pytest.mark.workflow
COPIED = ["Snakefile", "rules", "scripts", "src", "config", "envs", "report", "profiles"]
PHASES = ["download", "extract", "normalize", "split", "train", "import_weights", "infer", "score", "score_field",
          "score_budget", "report"]


class Study:
    """A finished tiny study in its own folder, and a way to ask Snakemake what would rerun."""

    def __init__(self, folder: Path, exe: str) -> None:
        self.folder, self.exe = folder, exe
        shutil.copy2(ROOT / "tests" / "data" / "tiny.yaml", folder / "tiny.yaml")
        write_small_pretrained(folder)  # `pretrained` imported from a small ncnn pair: pretrained.yaml

    def run(self, *args: str, config: dict | None = None) -> subprocess.CompletedProcess:
        (self.folder / "override.yaml").write_text(yaml.safe_dump(config or {}))
        configs = ["config/config.yaml", "tiny.yaml", "pretrained.yaml", "override.yaml"]
        cmd = [self.exe, "--cores", "2", "--configfile", *configs, *args]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        return subprocess.run(cmd, cwd=self.folder, capture_output=True, text=True, timeout=600, env=env)

    def planned(self, config: dict | None = None) -> dict[str, int]:
        """Jobs per phase that a dry run would execute."""
        result = self.run("--dry-run", "--quiet", "rules", config=config)
        assert result.returncode == 0, result.stderr[-3000:]
        counts = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in PHASES and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
        return counts


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory, snakemake_exe: str) -> Iterator[Study]:
    folder = tmp_path_factory.mktemp("rerun")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, folder / name)
    study = Study(folder, snakemake_exe)
    result = study.run()
    assert result.returncode == 0, result.stderr[-6000:]
    yield study


@contextlib.contextmanager
def edited(path: Path) -> Iterator[None]:
    """Change the content of `path` (Snakemake compares checksums, so a mere touch is no change), then restore it."""
    original, stat = path.read_bytes(), path.stat()
    path.write_bytes(original + b"\n# edited by a test\n")
    later = time.time() + 5
    os.utime(path, (later, later))
    try:
        yield
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_second_run_schedules_nothing(study: Study) -> None:
    assert study.planned() == {}


def test_train_settings_of_one_model_rerun_only_that_model_and_downstream(study: Study) -> None:
    plan = study.planned({"models": {"mri": {"data": "mri", "train": {"pixel": {"iterations": 21}}}}})
    # one model retrained, then its predictions and scores on the 3 datasets (field metrics on the 2 field
    # datasets), its budget snapshots on its own dataset (one job), then the report
    assert plan == {"train": 1, "infer": 3, "score": 3, "score_field": 2, "score_budget": 1,
                    "report": 1}


def test_a_normalization_setting_reruns_from_normalize_down(study: Study) -> None:
    plan = study.planned({"datasets": {"astro": {"normalize": {"high_percentile": 99.8}}}})
    # astro normalized and split again; the astro and astro_ft models retrained; every model on astro's
    # test set (bicubic, pretrained and 5 trained: 7) plus the 2 retrained models on the two other datasets (4)
    # field metrics of every model on astro (7) and of the 2 retrained models on mri (2); the astro crossover's
    # snapshots of generic, astro and astro_ft (3 jobs)
    assert plan == {"normalize": 1, "split": 1, "train": 2, "infer": 11, "score": 11, "score_field": 9,
                    "score_budget": 3, "report": 1}


def test_editing_the_training_code_reruns_training_not_extraction(study: Study) -> None:
    with edited(study.folder / "src" / "scisr" / "train" / "trainer.py"):
        plan = study.planned()
    # 5 trained models on 3 datasets (field metrics on 2); bicubic and the imported model's predictions stay;
    # every model's budget snapshots: (generic, mri, mri_ft) on mri and (generic, astro, astro_ft) on astro
    assert plan == {"train": 5, "infer": 15, "score": 15, "score_field": 10, "score_budget": 6,
                    "report": 1}


def test_retraining_the_generic_model_retrains_the_models_fine_tuned_from_it(study: Study) -> None:
    plan = study.planned({"models": {"generic": {"data": "generic", "train": {"pixel": {"iterations": 21}}}}})
    # generic, mri_ft and astro_ft (init: generic) retrained, each on the 3 datasets (field metrics on 2);
    # budgets: generic on mri and astro, mri_ft on mri, astro_ft on astro
    assert plan == {"train": 3, "infer": 9, "score": 9, "score_field": 6, "score_budget": 4,
                    "report": 1}


def test_editing_the_import_script_reimports_only_the_imported_model(study: Study) -> None:
    with edited(study.folder / "scripts" / "import_weights.py"):
        plan = study.planned()
    assert plan == {"import_weights": 1, "infer": 3, "score": 3, "score_field": 2, "report": 1}


def test_editing_the_report_code_reruns_only_the_report(study: Study) -> None:
    with edited(study.folder / "src" / "scisr" / "report" / "html.py"):
        plan = study.planned()
    assert plan == {"report": 1}


def test_editing_a_reader_reruns_extraction_of_every_dataset(study: Study) -> None:
    with edited(study.folder / "src" / "scisr" / "io" / "dicom.py"):
        plan = study.planned()
    assert plan["extract"] == 3 and "download" not in plan

