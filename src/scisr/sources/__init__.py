"""Download phase: put a source's files into a folder and describe them in MANIFEST.tsv.

A source is a dict with a ``kind``; each kind is one function in `KINDS` with the signature
``(source: dict, dest: Path, cache: Path) -> list[Entry]`` that places files under `dest` and
lists them. Network kinds (tcia, kaggle, http) keep what they downloaded in `cache`, a folder
that outlives a failed or killed run, so the next run resumes instead of starting over.
Source dicts are those of config/schema.yaml after validation (which fills the defaults).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from scisr.io.files import pid_alive
from scisr.sources.builtin import fetch_builtin
from scisr.sources.http import fetch_http
from scisr.sources.kaggle import fetch_kaggle
from scisr.sources.local import fetch_local
from scisr.sources.manifest import COLUMNS, Entry, build_manifest, read_manifest, write_manifest
from scisr.sources.net import SourceUnreachable
from scisr.sources.tcia import fetch_tcia

__all__ = ["COLUMNS", "KINDS", "Entry", "SourceUnreachable", "fetch", "read_manifest", "write_manifest"]

log = logging.getLogger("scisr.sources")

KINDS: dict[str, Callable[[dict, Path, Path], list[Entry]]] = {
    "builtin": fetch_builtin,
    "local": fetch_local,
    "tcia": fetch_tcia,
    "kaggle": fetch_kaggle,
    "http": fetch_http,
}
STAGING = ".fetching"


def fetch(
    source: dict, out_dir: str | os.PathLike, manifest: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None
) -> pd.DataFrame:
    """Fetch `source` into `out_dir` (its old content replaced) and write the manifest there.

    Files are first gathered in a hidden folder beside `out_dir`, which then takes its place,
    so a failed fetch leaves the previous content untouched and a rerun leaves no stale files.
    Staging folders left by a killed earlier run are removed first. Network sources keep their
    downloads in `cache_dir` (default: a hidden folder beside `out_dir`) to resume from.
    """
    kind = source.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown source kind {kind!r} in {source}; known kinds: {', '.join(sorted(KINDS))}")
    out_dir = Path(out_dir).absolute()
    manifest = Path(manifest).absolute()
    cache = Path(cache_dir).absolute() if cache_dir is not None else out_dir.with_name(f".{out_dir.name}.cache")
    if "path" in source:
        _check_apart(Path(source["path"]).expanduser().absolute(), out_dir)
    _check_apart(cache, out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{os.getpid()}.", suffix=STAGING, dir=out_dir.parent))
    os.chmod(staging, DIR_MODE)  # mkdtemp makes 0700; the raw data is meant to be shared like any folder
    try:
        try:
            entries = KINDS[kind](source, staging, cache)
        except SourceUnreachable as exc:
            raise SourceUnreachable(f"dataset folder {out_dir.name}, {kind} source: {exc}") from None
        table = build_manifest(staging, entries)
        if manifest.is_relative_to(out_dir) and manifest.relative_to(out_dir).as_posix() in set(table["path"]):
            raise ValueError(f"{manifest.name}: a fetched file has the manifest's name; move the manifest elsewhere")
        _replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_manifest(table, manifest)
    log.info("fetched %d file(s), %d bytes, from %s into %s", len(table), int(table["bytes"].sum()), kind, out_dir)
    return table


def _dir_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


DIR_MODE = _dir_mode()


def remove_stale_staging(out_dir: Path) -> list[Path]:
    """Remove `.<name>.<pid>.*.fetching` and `.<name>.old-*` folders beside `out_dir` left by dead runs.

    Only folders matching these patterns are touched, and a staging folder whose process id
    is still running is left alone. Returns the folders removed.
    """
    removed = []
    patterns = [f".{out_dir.name}.*{STAGING}", f".{out_dir.name}.old-*"]
    for path in sorted({p for pattern in patterns for p in out_dir.parent.glob(pattern)}):
        if not path.is_dir() or path.is_symlink():
            continue
        middle = path.name[len(out_dir.name) + 2 :].split(".", 1)[0]
        if path.name.endswith(STAGING) and middle.isdigit() and _alive(int(middle)):
            log.info("%s: left alone, its process %s is still running", path.name, middle)
            continue
        shutil.rmtree(path, ignore_errors=True)
        log.warning("removed %s, left behind by an interrupted earlier fetch", path)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers from an earlier call in this process
    return pid_alive(pid)


def _check_apart(source_dir: Path, out_dir: Path) -> None:
    """Refuse a source folder inside the output folder or the other way round (it would be erased)."""
    a, b = source_dir.resolve(), out_dir.resolve()
    if a == b or a.is_relative_to(b) or b.is_relative_to(a):
        raise ValueError(
            f"source folder {source_dir} and output folder {out_dir} overlap; choose an output folder elsewhere"
        )


def _replace_dir(new: Path, target: Path) -> None:
    """Put folder `new` in the place of `target`, removing `target`'s old content."""
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target}: exists and is not a folder; remove it or choose another output folder")
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old, ignore_errors=True)
