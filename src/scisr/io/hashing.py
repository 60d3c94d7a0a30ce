"""sha256 of files and folders: the study's one content digest (stdlib only)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["file_sha256", "folder_sha256"]

CHUNK = 1 << 20


def _blocks(path: Path) -> Iterator[bytes]:
    """A file's bytes, a chunk at a time (a large file never sits in memory)."""
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            yield block


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    for block in _blocks(Path(path)):
        digest.update(block)
    return digest.hexdigest()


def folder_sha256(folder: str | os.PathLike, pattern: str = "*.png") -> str:
    """Hex sha256 over the names and bytes of the files matching `pattern` in `folder`, sorted by name."""
    digest = hashlib.sha256()
    for path in sorted(Path(folder).glob(pattern)):
        digest.update(path.name.encode() + b"\0")
        for block in _blocks(path):
            digest.update(block)
    return digest.hexdigest()
