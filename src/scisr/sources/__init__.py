"""Download phase: put a source's files into a folder and describe them in MANIFEST.tsv.

A source is a dict with a ``kind``; each kind is one function in `KINDS` with the signature
``(source: dict, dest: Path) -> list[Entry]`` that places files under `dest` and lists them.
New kinds (tcia, kaggle, http) are added by adding an entry to `KINDS`.
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

from scisr.sources.builtin import fetch_builtin
from scisr.sources.local import fetch_local
from scisr.sources.manifest import COLUMNS, Entry, build_manifest, read_manifest, write_manifest

__all__ = ["COLUMNS", "KINDS", "Entry", "fetch", "read_manifest", "write_manifest"]

log = logging.getLogger("scisr.sources")

KINDS: dict[str, Callable[[dict, Path], list[Entry]]] = {
    "builtin": fetch_builtin,
    "local": fetch_local,
}


def fetch(source: dict, out_dir: str | os.PathLike, manifest: str | os.PathLike) -> pd.DataFrame:
    """Fetch `source` into `out_dir` (its old content replaced) and write the manifest there.

    Files are first gathered in a hidden folder beside `out_dir`, which then takes its place,
    so a failed fetch leaves the previous content untouched and a rerun leaves no stale files.
    """
    kind = source.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown source kind {kind!r} in {source}; known kinds: {', '.join(sorted(KINDS))}")
    out_dir = Path(out_dir).absolute()
    manifest = Path(manifest).absolute()
    if "path" in source:
        _check_apart(Path(source["path"]).expanduser().absolute(), out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".fetching", dir=out_dir.parent))
    try:
        entries = KINDS[kind](source, staging)
        table = build_manifest(staging, entries)
        if manifest.is_relative_to(out_dir) and manifest.relative_to(out_dir).as_posix() in set(table["path"]):
            raise ValueError(f"{manifest.name}: a fetched file has the manifest's name; move the manifest elsewhere")
        _replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_manifest(table, manifest)
    log.info("fetched %d file(s), %d bytes, from %s into %s", len(table), int(table["bytes"].sum()), kind, out_dir)
    return table


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
