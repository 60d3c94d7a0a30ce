"""Readers for scientific and ordinary images: float in, float out, physical units.

`read_frames(path)` sniffs the content (not the name) and returns a list of `Frame`:
'DICM' at byte 128 -> DICOM; 'SIMPLE' at byte 0 (or a gzipped .fits.gz) -> FITS; anything
else -> raster (Pillow / tifffile). A DICOM without the 128-byte preamble is read as DICOM
when its name ends in .dcm/.dicom/.ima. Every failure, whatever the decoder raised (even a
`BaseException` such as a Rust panic), reaches the caller as `ReadError` naming the file;
`NotAnImageError` (a `ReadError`) marks readable files that hold no image.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

from scisr.io.frame import Frame, ReadError
from scisr.io.limits import DEFAULT_MAX_BYTES, reader_edge, stage

__all__ = ["is_lossy", "read_frames", "sniff"]

_DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
_FITS_GZ_SUFFIXES = (".fits.gz", ".fit.gz", ".fts.gz")


def sniff(path: str | os.PathLike) -> str:
    """The reader kind for a file from its first bytes: 'dicom', 'fits' or 'raster'.

    'dicom-nopreamble' is a file named .dcm/.dicom/.ima without the 'DICM' marker (read with force).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise ReadError(f"{path.name}: cannot open ({exc.strerror or exc})") from exc
    name = path.name.lower()
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"SIMPLE") or (head.startswith(b"\x1f\x8b") and name.endswith(_FITS_GZ_SUFFIXES)):
        return "fits"
    if name.endswith(_DICOM_SUFFIXES):
        return "dicom-nopreamble"
    return "raster"


def _lazy(module: str, name: str, **kwargs: object) -> Callable[..., object]:
    """A call into `module.name` that imports the module (pydicom, astropy: slow) on first use."""

    def call(path: Path, **more: object) -> object:
        return getattr(importlib.import_module(module), name)(path, **kwargs, **more)

    return call


READERS: dict[str, Callable[..., list[Frame]]] = {
    "dicom": _lazy("scisr.io.dicom", "read_dicom"),
    "dicom-nopreamble": _lazy("scisr.io.dicom", "read_dicom", force=True),
    "fits": _lazy("scisr.io.fits", "read_fits"),
    "raster": _lazy("scisr.io.raster", "read_raster"),
}
_LOSSY_PROBES: dict[str, Callable[[Path], bool]] = {
    "dicom": _lazy("scisr.io.dicom", "is_dicom_lossy"),
    "dicom-nopreamble": _lazy("scisr.io.dicom", "is_dicom_lossy"),
    "fits": _lazy("scisr.io.fits", "is_fits_lossy"),
    "raster": _lazy("scisr.io.raster", "is_raster_lossy"),
}


def read_frames(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Frame]:
    """Every 2-D frame of an image file as float32 in physical units; ReadError (only) if unusable.

    `max_bytes` caps the decoded pixel bytes a file may declare (checked before decoding).
    """
    path = Path(path)
    kind = sniff(path)
    with reader_edge(path, "cannot be read"), stage(f"{kind.split('-')[0].upper()} reading"):
        frames = READERS[kind](path, max_bytes=max_bytes)
    if not frames:
        raise ReadError(f"{path.name}: no image frames found")
    return frames


def is_lossy(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bool:
    """Cheap header-only guess whether a file's pixels went through lossy compression.

    Never raises: an unreadable file counts as not lossy (reading it will report the error).
    """
    path = Path(path)
    try:
        with reader_edge(path, "header unreadable"):
            kind = sniff(path)
            extra = {} if kind == "raster" else {"max_bytes": max_bytes}
            with stage(f"{kind.split('-')[0].upper()} header probe"):
                return bool(_LOSSY_PROBES[kind](path, **extra))
    except ReadError:
        return False
