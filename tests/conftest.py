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
