"""MANIFEST.tsv: what a download put where (path, bytes, sha256, source, subject, series, study, license).

`series`, `study` and `license` are filled by sources that know them (TCIA: SeriesInstanceUID,
StudyInstanceUID, the collection's licence name and URI; http and kaggle: the configured licence)
and are empty otherwise.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scisr.io.files import write_text_atomic
from scisr.io.hashing import file_sha256

COLUMNS = ["path", "bytes", "sha256", "source", "subject", "series", "study", "license"]


@dataclass(frozen=True)
class Entry:
    """One fetched file: `path` relative to the output folder (POSIX), its origin, a subject hint."""

    path: str
    source: str
    subject: str = ""
    series: str = ""
    study: str = ""
    license: str = ""


def copy_into(src: str | os.PathLike, root: Path, rel: str, *, link: bool = False) -> None:
    """Copy `src` (symlinks followed) to `root/rel`; refuse a `rel` that escapes `root`.

    With `link`, a hard link is made where the file system allows (a download cache shares its
    bytes with the output folder instead of doubling them), a copy otherwise.
    """
    target = (root / rel).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValueError(f"{rel}: destination escapes the output folder {root}")
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, target)
            return
        except OSError:
            pass  # another file system, or links not allowed: copy
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
            "series": e.series,
            "study": e.study,
            "license": e.license,
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
