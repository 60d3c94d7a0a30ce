"""Shared fixtures: the repository root, the team's shared real files, the venv's tools."""

from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real public DICOM/FITS files); skips the test when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (only team machines have it)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def snakemake_exe() -> str:
    """The snakemake executable of the running interpreter's environment."""
    exe = BIN / "snakemake"
    found = str(exe) if exe.exists() else shutil.which("snakemake")
    if not found:
        pytest.fail("snakemake is not installed in this environment (run `make install`)")
    return found


def train_settings(partial: dict, *, seed: int = 0, scale: int = 4) -> dict:
    """What the train rule passes: `partial` validated against config/train.schema.yaml, which fills in the
    defaults (the schema is the one place they live), plus the study's seed and scale."""
    from snakemake.utils import validate

    settings = copy.deepcopy(partial)
    validate(settings, str(ROOT / "config" / "train.schema.yaml"))
    return {**settings, "seed": seed, "scale": scale}


def dataset_settings(section: str, partial: dict | None = None) -> dict:
    """A dataset's `section` ("normalize", "split") as the rules pass it: `partial` validated against that part
    of config/schema.yaml, which fills in the defaults (the library has none of its own)."""
    from snakemake.utils import validate

    dataset = {"source": {"kind": "builtin", "set": "mri"}, section: copy.deepcopy(partial or {})}
    config = {"datasets": {"d": dataset}, "models": {"m": {"data": "d"}}, "evaluate": ["d"]}
    validate(config, str(ROOT / "config" / "schema.yaml"))
    return config["datasets"]["d"][section]


# The cross-validated tiny study: 9 synthetic MRI subjects in 3 folds beside the builtin generic photographs,
# built once per test run and shared by the folds workflow test and the browser test of its report.
FOLDS_SUBJECTS = 9
FOLDS_K = 3
FOLDS_CONFIG = {
    "scale": 4,
    "seed": 0,
    "datasets": {
        "generic": {"source": {"kind": "builtin", "set": "generic"},
                    "normalize": {"low_percentile": 0.0, "high_percentile": 100.0}},
        "mri": {"source": {"kind": "local", "path": "source"}, "field": "mri", "modalities": ["MR"],
                "normalize": {"low_percentile": 0.5, "high_percentile": 99.5}, "split": {"degradation": "kspace"}},
    },
    "models": {"generic": {"data": "generic"}, "mri": {"data": "mri"}, "mri_ft": {"data": "mri", "init": "generic"}},
    "evaluate": ["mri", "generic"],
    "study": {"folds": FOLDS_K, "budgets": [10]},
    "train": {"generator": {"arch": "srresnet", "channels": 8, "blocks": 1},
              "discriminator": {"arch": "vgg", "base_channels": 8, "pool": 1}, "batch_size": 4, "patch_size": 32,
              "pixel": {"iterations": 20, "milestones": [15]}, "gan": {"iterations": 6}, "val_every": 10,
              "checkpoint_every": 10},
    "finetune": {"pixel": {"iterations": 10, "milestones": [5]}, "gan": {"iterations": 4}},
    "compute": {"train_threads": 1},
    "report": {"title": "SciSR folds study"},
}


class FoldsStudy:
    """A finished cross-validated tiny study in `work`, and a way to run Snakemake on it again."""

    def __init__(self, work: Path, exe: str) -> None:
        self.work, self.exe = work, exe

    def run(self, *args: str, config: dict | None = None, timeout: int = 900):
        import subprocess

        import yaml

        (self.work / "override.yaml").write_text(yaml.safe_dump(config or {}))
        cmd = [self.exe, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(self.work), "--configfile",
               str(self.work / "config.yaml"), str(self.work / "pretrained.yaml"), str(self.work / "override.yaml"),
               "--cores", "2", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.work)


@pytest.fixture(scope="session")
def folds_study(tmp_path_factory: pytest.TempPathFactory, snakemake_exe: str) -> FoldsStudy:
    """The cross-validated tiny study, run once (FOLDS_CONFIG plus a small imported `pretrained` model)."""
    import yaml

    from ncnn_helpers import write_small_pretrained
    from study_data import write_series

    work = tmp_path_factory.mktemp("folds")
    for s in range(FOLDS_SUBJECTS):
        write_series(work / "source" / f"subject{s}", n=3, patient_id=f"P{s:04d}", size=64, seed=s)
    (work / "config.yaml").write_text(yaml.safe_dump(FOLDS_CONFIG))
    write_small_pretrained(work)
    study = FoldsStudy(work, snakemake_exe)
    result = study.run()
    assert result.returncode == 0, result.stderr[-6000:]
    return study
