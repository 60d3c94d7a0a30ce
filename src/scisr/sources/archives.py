"""Unpack ZIP and tar archives without letting a member escape the target folder.

Refused, with the archive and member named: absolute paths, drive letters, `..` parts,
symbolic and hard links, device files and FIFOs, duplicate names, names that are not text,
more members than `max_members`, and more uncompressed bytes than `max_bytes` (counted while
writing, so a header that understates a member's size does not get past the limit).

Why not `tarfile`'s ``filter="data"`` (Python 3.11.4+/3.12; checked on 3.11.7): it covers tar only,
not ZIP, and it is laxer than these rules: a member ``/etc/evil`` is written as ``etc/evil``, a
symbolic link to a sibling is created, a duplicate name silently overwrites the first copy, a
10 MB member is written with no size budget, and a ``../escape`` member stops extraction only after
the members before it were written (here every member is checked before the first byte is written).
"""

from __future__ import annotations

import gzip
import logging
import lzma
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from scisr.sources.local import matches

log = logging.getLogger("scisr.sources")

MAX_MEMBERS = 200_000
MAX_BYTES = 200 * 10**9
CHUNK = 1 << 20


class UnsafeArchive(ValueError):
    """An archive whose content would escape its folder or exceed a limit."""


class CorruptArchive(ValueError):
    """A file that is not a readable ZIP or tar archive (truncated, bad CRC, an error page)."""


def is_archive(path: str | os.PathLike) -> bool:
    """True for a ZIP file or a (possibly compressed) tar file, judged by content."""
    path = Path(path)
    return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)


def safe_member_path(archive: str, name: str) -> PurePosixPath:
    """The relative POSIX path of member `name`, or UnsafeArchive when it could escape."""
    if "\x00" in name:
        raise UnsafeArchive(f"{archive}: member {name!r} has a NUL byte in its name; refusing the archive")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeArchive(
            f"{archive}: member {name!r} has a name that is not valid text; refusing the archive"
        ) from None
    unified = name.replace("\\", "/")
    parts = PurePosixPath(unified).parts
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise UnsafeArchive(f"{archive}: member {name!r} has an absolute path; refusing the archive")
    if ".." in parts:
        raise UnsafeArchive(f"{archive}: member {name!r} points outside the folder ('..'); refusing the archive")
    clean = PurePosixPath(*[p for p in parts if p not in ("", ".")])
    if not clean.parts:
        raise UnsafeArchive(f"{archive}: member {name!r} has an empty path; refusing the archive")
    return clean


class _Budget:
    """Counts members and bytes against the limits."""

    def __init__(self, archive: str, max_members: int, max_bytes: int) -> None:
        self.archive, self.max_members, self.max_bytes = archive, max_members, max_bytes
        self.members = 0
        self.bytes = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise UnsafeArchive(
                f"{self.archive}: more than {self.max_members} members; raise the source's max_members if expected"
            )

    def add(self, n: int) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:
            raise UnsafeArchive(
                f"{self.archive}: unpacks to more than {self.max_bytes} bytes; "
                "raise the source's max_unpacked_bytes if expected"
            )


def _write(stream: IO[bytes], target: Path, budget: _Budget, archive: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        out = open(target, "xb")  # noqa: SIM115 (closed by the with below) 'x': never through an existing file or link
    except (FileExistsError, NotADirectoryError) as exc:
        raise UnsafeArchive(f"{archive}: member {target.name} clashes with another member ({exc})") from None
    with out:
        while block := stream.read(CHUNK):
            budget.add(len(block))
            out.write(block)


def _target(dest: Path, rel: PurePosixPath, archive: str) -> Path:
    target = dest / rel
    parent = target.parent.resolve()
    if not parent.is_relative_to(dest.resolve()):
        raise UnsafeArchive(f"{archive}: member {rel} would be written outside {dest}; refusing the archive")
    return target


def _zip_members(path: Path, archive: zipfile.ZipFile) -> Iterator[tuple[zipfile.ZipInfo, PurePosixPath]]:
    for info in archive.infolist():
        rel = safe_member_path(path.name, info.filename)
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if info.is_dir() or kind == stat.S_IFDIR:
            continue
        if kind not in (0, stat.S_IFREG):
            what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
            raise UnsafeArchive(f"{path.name}: member {info.filename!r} is {what}; refusing the archive")
        yield info, rel


def _tar_members(path: Path, archive: tarfile.TarFile) -> Iterator[tuple[tarfile.TarInfo, PurePosixPath]]:
    for info in archive:
        rel = safe_member_path(path.name, info.name)
        if info.isdir():
            continue
        if info.issym() or info.islnk():
            raise UnsafeArchive(f"{path.name}: member {info.name!r} is a link; refusing the archive")
        if not info.isreg():
            raise UnsafeArchive(f"{path.name}: member {info.name!r} is not a regular file; refusing the archive")
        yield info, rel


@contextmanager
def _opened(path: Path) -> Iterator[tuple[str, zipfile.ZipFile | tarfile.TarFile]]:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            yield "zip", archive
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            yield "tar", archive
    else:
        raise CorruptArchive(f"{path.name}: neither a ZIP nor a tar archive")


def unpack(
    archive: str | os.PathLike, dest: str | os.PathLike, *, max_members: int = MAX_MEMBERS, max_bytes: int = MAX_BYTES
) -> list[str]:
    """Unpack a ZIP or tar `archive` into `dest`; return the files written (POSIX paths, sorted).

    Every member is checked before anything is written, and sizes again while writing. On an
    unsafe member nothing of the archive is written.
    """
    path, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return _unpack(path, dest, max_members, max_bytes)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as exc:
        raise CorruptArchive(f"{path.name}: damaged archive ({type(exc).__name__}: {exc})") from None


def _unpack(path: Path, dest: Path, max_members: int, max_bytes: int) -> list[str]:
    with _opened(path) as (kind, opened):
        members = list(_zip_members(path, opened) if kind == "zip" else _tar_members(path, opened))
        budget = _Budget(path.name, max_members, max_bytes)
        seen: set[PurePosixPath] = set()
        for info, rel in members:  # all checks first: an unsafe archive writes nothing
            budget.member()
            budget.add(info.file_size if kind == "zip" else info.size)
            if rel in seen:
                raise UnsafeArchive(f"{path.name}: member {rel} appears twice; refusing the archive")
            seen.add(rel)
        budget = _Budget(path.name, max_members, max_bytes)
        for info, rel in members:
            target = _target(dest, rel, path.name)
            stream = opened.open(info) if kind == "zip" else opened.extractfile(info)
            with stream:
                _write(stream, target, budget, path.name)
    log.info("unpacked %s: %d file(s), %d bytes", path.name, len(members), budget.bytes)
    return sorted(rel.as_posix() for _, rel in members)


def unpack_matching(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    patterns: list[str] | None,
    *,
    max_members: int = MAX_MEMBERS,
    max_bytes: int = MAX_BYTES,
) -> list[str]:
    """Unpack `archive` into `dest` and keep only the files matching `patterns` (all when empty)."""
    dest = Path(dest)
    written = unpack(archive, dest, max_members=max_members, max_bytes=max_bytes)
    if not patterns:
        return written
    kept = [rel for rel in written if matches(rel, patterns)]
    for rel in set(written) - set(kept):
        (dest / rel).unlink()
    for folder in sorted(
        {p for rel in written for p in (dest / rel).parents if p != dest and p.is_relative_to(dest)},
        key=lambda p: len(p.parts),
        reverse=True,
    ):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return kept
