"""MANIFEST.tsv: what a download put where (path, bytes, sha256, source, subject)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scisr.io.hashing import file_sha256
from scisr.io.files import write_text_atomic

COLUMNS = ["path", "bytes", "sha256", "source", "subject"]


@dataclass(frozen=True)
class Entry:
    """One fetched file: `path` relative to the output folder (POSIX), its origin, a subject hint."""

    path: str
    source: str
    subject: str = ""


def copy_into(src: str | os.PathLike, root: Path, rel: str) -> None:
    """Copy `src` (symlinks followed) to `root/rel`; refuse a `rel` that escapes `root`."""
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"{rel}: destination escapes the output folder {root}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)


def build_manifest(root: str | os.PathLike, entries: Iterable[Entry]) -> pd.DataFrame:
    """Manifest table for files already under `root`, sorted by path; sizes and hashes measured."""
    root = Path(root)
    rows = [
        {
            "path": e.path,
            "bytes": (root / e.path).stat().st_size,
            "sha256": file_sha256(root / e.path),
            "source": e.source,
            "subject": e.subject,
        }
        for e in entries
    ]
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values("path", ignore_index=True)
    duplicated = table["path"][table["path"].duplicated()]
    if len(duplicated):
        raise ValueError(f"manifest: the same path is listed twice: {', '.join(duplicated)}")
    return table.astype({"bytes": "int64"})


def write_manifest(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the manifest as tab-separated text, atomically."""
    write_text_atomic(path, table[COLUMNS].to_csv(sep="\t", index=False, lineterminator="\n"))


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a MANIFEST.tsv (text columns as str, '' for empty, bytes as int)."""
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in ("path",) if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: not a manifest, missing column(s) {missing}")
    for column in COLUMNS:
        if column not in table.columns:
            table[column] = ""
    if (table["bytes"] != "").all():
        table["bytes"] = table["bytes"].astype("int64")
    return table
