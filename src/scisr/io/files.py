"""Atomic writes and the study's two array formats: float32 TIFF and 16-bit PNG."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

PNG_MAX = 65535
# zlib level 1 for the study's intermediate frames and pairs: lossless like any level, several times faster to
# write than the default 6 for slightly larger files (the figures: bench/README.md, "Scale").
TIFF_ZLIB_LEVEL = PNG_ZLIB_LEVEL = 1


def _umask() -> int:
    """The process umask (read without changing it for longer than a call)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()


_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# `atomic_path`'s temporary names: .<name>.<pid>.<8 characters of mkstemp>.tmp<suffix>
ATOMIC_TEMPORARY = re.compile(r"^\..+\.(?P<pid>\d+)\.[a-z0-9_]{8}\.tmp")
_SWEPT: set[Path] = set()  # folders this process has cleared of dead processes' temporary files


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary file is `.<name>.<pid>.<random>.tmp<suffix>`: those left in a folder by processes that were
    killed (SIGKILL, a node lost) are removed by a process's first write into that folder, so a rerun leaves
    no partial file behind (once per folder and process: a scan per write would make writing n files into
    one folder cost n^2). A full disk or a file-size limit fails with an OSError that says so;
    `path` is then untouched (the old file, or none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent not in _SWEPT:
        _remove_orphans(path.parent)
        _SWEPT.add(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, FILE_MODE)  # mkstemp makes 0600; results are meant to be shared
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno in _FULL:
            raise OSError(
                exc.errno,
                f"{path}: the disk is full or a file-size limit was reached while writing it "
                f"({exc.strerror}); nothing was written; free space (or raise the limit) and "
                "rerun",
            ) from exc
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


def _remove_orphans(folder: Path) -> None:
    """Remove `atomic_path` temporary files in `folder` whose writing process no longer exists."""
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(".")]
    except OSError:
        return
    for name in names:
        match = ATOMIC_TEMPORARY.match(name)
        if match and not pid_alive(int(match["pid"])):
            with contextlib.suppress(OSError):
                os.unlink(folder / name)


def pid_alive(pid: int) -> bool:
    """Whether a process `pid` exists on this machine (one we may not signal counts as existing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def link_or_copy(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Place the file `source` at `path` atomically: a hard link where the file system allows one, else a copy."""
    with atomic_path(path) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def write_tiff(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a 2-D array as a float32 TIFF (lossless, physical units kept)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D image, got shape {image.shape}")
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, image, compression="zlib", compressionargs={"level": TIFF_ZLIB_LEVEL})


def read_tiff(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF written by `write_tiff` as float32."""
    return np.asarray(tifffile.imread(path), dtype=np.float32)


def to_uint16(image: np.ndarray) -> np.ndarray:
    """Quantize [0,1] floats to uint16 (values outside are clipped); uint16 input is returned as it is."""
    if getattr(image, "dtype", None) == np.uint16:
        return image
    image = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0)
    return np.round(image * PNG_MAX).astype(np.uint16)


def write_png16(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write a 2-D image with values in [0,1] (or uint16 pixels, as they are) as a 16-bit grayscale PNG."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"{path}: expected a 2-D image, got shape {image.shape}")
    with atomic_path(path) as tmp:
        Image.fromarray(to_uint16(image)).save(tmp, format="PNG", compress_level=PNG_ZLIB_LEVEL)


def as_png16(image: np.ndarray) -> np.ndarray:
    """What `write_png16` then `read_png16` would give back for `image`: float32 in [0,1], quantized to 16 bits."""
    return to_uint16(image).astype(np.float32) / PNG_MAX


def read_png16(path: str | os.PathLike) -> np.ndarray:
    """Read a 16-bit grayscale PNG as float32 in [0,1]."""
    with Image.open(path) as im:
        array = np.asarray(im)  # Pillow gives mode I;16 (native uint16) or I;16B (big-endian)
    if array.dtype.kind != "u" or array.dtype.itemsize != 2 or array.ndim != 2:
        raise ValueError(f"{path}: expected a 16-bit grayscale PNG, got {array.dtype} {array.shape}")
    return array.astype(np.float32) / PNG_MAX


def remove_stale(folder: str | os.PathLike, pattern: str, keep: set[str]) -> list[Path]:
    """Delete files in `folder` matching `pattern` whose names are not in `keep` (left by an earlier run)."""
    stale = [path for path in Path(folder).glob(pattern) if path.name not in keep]
    for path in stale:
        path.unlink()
    return stale
