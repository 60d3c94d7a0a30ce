"""Shared fixtures and helpers: the repository root, the team's shared real files, the venv's tools, the one tiny
training setup and tiny trained model, the one way to run Snakemake, and the tiny studies built once per test run."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml

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


# The workflow tests' config (merged over config/config.yaml): the tiny model and schedule every test builds on.
TINY = yaml.safe_load((ROOT / "tests" / "data" / "tiny.yaml").read_text())
TINY_NORMALIZATION = {"low_percentile": 0.5, "high_percentile": 99.5, "stretch": "none", "asinh_a": 0.1}


def merged(base: dict, changes: dict) -> dict:
    """A copy of `base` with `changes` merged in: nested mappings key by key, any other value replaced."""
    out = copy.deepcopy(base)
    for key, value in changes.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merged(out[key], value) if both else copy.deepcopy(value)
    return out


def tiny_settings(changes: dict | None = None, *, seed: int = 0, scale: int = 4) -> dict:
    """The tests' one tiny training setup, tests/data/tiny.yaml's `train` (SRResNet 8 channels x 1 block, batches
    of 4 32-px patches, 20 pixel + 6 GAN iterations), with `changes` merged in, as the train rule passes it."""
    return train_settings(merged(TINY["train"], changes or {}), seed=seed, scale=scale)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny SRResNet (4 channels, 1 block) trained through the train entry point, 3 pixel and 2 GAN iterations on a
    generated split, as model `mri` of dataset `mri`: {"generator", "history", "card", "normalization"} (read only)."""
    from train_helpers import make_split

    from scisr.train import Settings, TrainJob, train

    root = tmp_path_factory.mktemp("tiny_model")
    split = make_split(root / "split", n_train=2, n_val=1)
    settings = tiny_settings(
        {
            "generator": {"channels": 4},
            "discriminator": {"base_channels": 4},
            "batch_size": 2,
            "pixel": {"iterations": 3},
            "gan": {"iterations": 2},
            "val_every": 2,
        }
    )
    model = root / "models" / "mri"
    train(
        TrainJob(
            train_dir=split / "train",
            val_dir=split / "val",
            generator=model / "generator.pt",
            history=model / "history.tsv",
            card=model / "model.yaml",
            checkpoint_dir=root / "ckpt",
            settings=Settings.from_dict(settings),
            name="mri",
            dataset="mri",
            normalization=TINY_NORMALIZATION,
            device="cpu",
            threads=1,
        )
    )
    return {
        "generator": model / "generator.pt",
        "history": model / "history.tsv",
        "card": model / "model.yaml",
        "normalization": copy.deepcopy(TINY_NORMALIZATION),
    }


def snakemake_command(
    exe: str,
    workdir: Path,
    *args: str,
    configfiles: Iterable[str | Path] = (),
    snakefile: Path | None = None,
    cores: int | None = 2,
) -> list[str]:
    """Snakemake on `snakefile` (this repository's by default) in `workdir`: `args` (targets and options) first,
    `--configfile` last, since it takes every word after it."""
    command = [exe, *args, "--snakefile", str(snakefile or ROOT / "Snakefile"), "--directory", str(workdir)]
    if cores:
        command += ["--cores", str(cores)]
    configfiles = [str(c) for c in configfiles]
    return command + (["--configfile", *configfiles] if configfiles else [])


def run_snakemake(
    exe: str,
    workdir: Path,
    *args: str,
    configfiles: Iterable[str | Path] = (),
    snakefile: Path | None = None,
    cores: int | None = 2,
    timeout: int = 600,
    env: dict | None = None,
) -> subprocess.CompletedProcess:
    """Run snakemake_command(...) in `workdir`, its output captured as text."""
    command = snakemake_command(exe, workdir, *args, configfiles=configfiles, snakefile=snakefile, cores=cores)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=workdir, env=env, check=False)


# The tiny study: config/config.yaml's data, tests/data/tiny.yaml's model and schedule, a small imported `pretrained`
# and `mri_ftp` fine-tuned from it. Built once per test run, in a folder that holds its own copy of the workflow (so
# the rerun tests may edit library files there), and shared by test_workflow.py and test_rerun.py.
TINY_STUDY_COPIED = ["Snakefile", "rules", "scripts", "src", "config", "envs", "report", "profiles"]


class TinyStudy:
    """A finished tiny study in its own folder, and a way to run Snakemake on it or ask what would rerun."""

    def __init__(self, folder: Path, exe: str) -> None:
        from ncnn_helpers import write_small_pretrained

        self.folder, self.exe = folder, exe
        for name in TINY_STUDY_COPIED:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, folder / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, folder / name)
        shutil.copy2(ROOT / "tests" / "data" / "tiny.yaml", folder / "tiny.yaml")
        write_small_pretrained(folder, finetune=True)  # pretrained.yaml

    def command(self, *args: str, config: dict | None = None) -> list[str]:
        """The snakemake command line with the study's config files, and `config` (override.yaml) over them."""
        (self.folder / "override.yaml").write_text(yaml.safe_dump(config or {}))
        configs = [
            self.folder / name for name in ("config/config.yaml", "tiny.yaml", "pretrained.yaml", "override.yaml")
        ]
        return snakemake_command(self.exe, self.folder, *args, configfiles=configs, snakefile=self.folder / "Snakefile")

    def run(
        self, *args: str, config: dict | None = None, env: dict | None = None, timeout: int = 600
    ) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
        return subprocess.run(
            self.command(*args, config=config),
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )

    def planned(self, config: dict | None = None, targets: tuple[str, ...] = ()) -> dict[str, int]:
        """Jobs per rule that a dry run (of `targets`, else the whole study) would execute (the rows of Snakemake's
        job stats, without `all`)."""
        result = self.run(*targets, "--dry-run", "--quiet", "rules", config=config)
        assert result.returncode == 0, result.stderr[-3000:]
        counts = {}
        for line in result.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("all", "total", "job"):
                counts[parts[0]] = int(parts[1])
        return counts


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory, snakemake_exe: str) -> TinyStudy:
    """The tiny study, run once per test run (every phase, end to end)."""
    study = TinyStudy(tmp_path_factory.mktemp("tiny_study"), snakemake_exe)
    result = study.run(timeout=1800)
    assert result.returncode == 0, result.stderr[-6000:]
    return study


# The cross-validated tiny study: 9 synthetic MRI subjects in 3 folds beside the builtin generic photographs,
# built once per test run and shared by the folds workflow test and the browser test of its report.
FOLDS_SUBJECTS = 9
FOLDS_K = 3
FOLDS_CONFIG = {
    "scale": 4,
    "seed": 0,
    "datasets": {
        "generic": {
            "source": {"kind": "builtin", "set": "generic"},
            "normalize": {"low_percentile": 0.0, "high_percentile": 100.0},
        },
        "mri": {
            "source": {"kind": "local", "path": "source"},
            "field": "mri",
            "modalities": ["MR"],
            "normalize": {"low_percentile": 0.5, "high_percentile": 99.5},
            "split": {"degradation": "kspace"},
        },
    },
    "models": {"generic": {"data": "generic"}, "mri": {"data": "mri"}, "mri_ft": {"data": "mri", "init": "generic"}},
    "evaluate": ["mri", "generic"],
    "study": {"folds": FOLDS_K, "budgets": [10]},
    "train": copy.deepcopy(TINY["train"]),
    "finetune": copy.deepcopy(TINY["finetune"]),
    "compute": {"train_threads": 1},
    "report": {"title": "SciSR folds study"},
}


class FoldsStudy:
    """A finished cross-validated tiny study in `work`, and a way to run Snakemake on it again."""

    def __init__(self, work: Path, exe: str) -> None:
        self.work, self.exe = work, exe

    def run(self, *args: str, config: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
        (self.work / "override.yaml").write_text(yaml.safe_dump(config or {}))
        configs = [self.work / name for name in ("config.yaml", "pretrained.yaml", "override.yaml")]
        return run_snakemake(self.exe, self.work, *args, configfiles=configs, timeout=timeout)


@pytest.fixture(scope="session")
def folds_study(tmp_path_factory: pytest.TempPathFactory, snakemake_exe: str) -> FoldsStudy:
    """The cross-validated tiny study, run once (FOLDS_CONFIG plus a small imported `pretrained` model)."""
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
