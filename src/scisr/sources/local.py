"""A folder on this machine (``{"kind": "local", "path": ..., "patterns": [...]}``).

Files are copied with their paths relative to the folder. `patterns` (optional) are shell
wildcards matched case-insensitively against the file name or the relative path; without
them every file is taken. Hidden files and folders (name starting with '.') are skipped.
Symbolic links are followed (a link loop is visited once). The manifest's `source` is
`local:<relative path>`, never the folder's absolute path, and log lines name no file: folder
and file names often hold patient names.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from pathlib import Path

from scisr.sources.manifest import Entry, copy_into

log = logging.getLogger("scisr.sources")


def fetch_local(source: dict, dest: Path, cache: Path | None = None) -> list[Entry]:
    """Copy the matching files of `source['path']` into `dest`, keeping relative paths."""
    if not source.get("path"):
        raise ValueError("local source: 'path' is missing; set it to the folder holding your images")
    root = Path(source["path"]).expanduser().absolute()
    if not root.is_dir():
        raise FileNotFoundError(f"local source {root}: folder does not exist; fix 'path' in the config")
    patterns = source.get("patterns") or ["*"]
    if isinstance(patterns, str):
        patterns = [patterns]
    entries, odd = [], 0
    for path in _walk(root):
        rel = path.relative_to(root).as_posix()
        if not matches(rel, patterns):
            continue
        if not path.is_file():
            odd += 1
            continue
        copy_into(path, dest, rel)
        entries.append(Entry(path=rel, source=f"local:{rel}"))
    if odd:
        log.warning(
            "local source: %d matching path(s) are broken links or not regular files; left out "
            "(broken links are listed by `find PATH -xtype l`)",
            odd,
        )
    if not entries:
        raise ValueError(f"local source {root}: no files match {patterns}; check 'path' and 'patterns'")
    return entries


def _walk(root: Path) -> list[Path]:
    """Every non-hidden file below `root` in sorted order, following links, each real folder once."""
    out, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / name for name in sorted(filenames) if not name.startswith("."))
    return sorted(out)


def matches(rel: str, patterns: list[str]) -> bool:
    """True when `rel` or its file name matches one of the shell wildcards (case-insensitive)."""
    rel_lower, name_lower = rel.lower(), rel.rsplit("/", 1)[-1].lower()
    return any(
        fnmatch.fnmatchcase(name_lower, p.lower()) or fnmatch.fnmatchcase(rel_lower, p.lower()) for p in patterns
    )
