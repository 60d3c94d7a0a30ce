"""Files at URLs with a known size and SHA-256 (``{"kind": "http", "files": [...], ...}``).

Each item of `files` is ``{url, sha256, size, name}`` (`name` defaults to the URL's last path
part). A file is downloaded into the cache (resumed after a dropped connection or a kill,
retried with backoff), checked against its size and SHA-256, and only then renamed into place;
a mismatch deletes the partial file and stops with an error. ZIP and tar files are unpacked
safely (scisr.sources.archives) and only members matching `patterns` are kept; other files are
taken as they are. A verified file in the cache is never downloaded again.
"""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path, PurePosixPath

from scisr.sources.archives import MAX_BYTES, MAX_MEMBERS, is_archive, unpack_matching
from scisr.sources.local import matches
from scisr.sources.manifest import Entry, copy_into
from scisr.sources.net import download

log = logging.getLogger("scisr.sources")


def file_name(item: dict) -> str:
    """The cache file name of one `files` item: its `name`, or the URL's last path part."""
    name = item.get("name") or PurePosixPath(urllib.parse.urlsplit(item["url"]).path).name
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ValueError(f"http source: cannot name the file of {item['url']!r}; give it a `name`")
    return name


def fetch_http(source: dict, dest: Path, cache: Path) -> list[Entry]:
    """Download, verify and (for archives) unpack every file of an http source into `dest`."""
    files = source.get("files") or []
    if not files:
        raise ValueError("http source: `files` is empty; list each file's url, sha256 and size")
    names = [file_name(item) for item in files]
    if len(set(names)) != len(names):
        raise ValueError(f"http source: two files share a name ({', '.join(names)}); give them distinct `name`s")
    patterns = source.get("patterns") or []
    licence = source.get("license", "")
    entries = []
    for item, name in zip(files, names):
        path = download(
            item["url"], cache / name, label=f"http {name}", sha256=item.get("sha256"), size=item.get("size")
        )
        if source.get("unpack", True) and is_archive(path):
            kept = unpack_matching(
                path,
                dest,
                patterns,
                max_members=source.get("max_members", MAX_MEMBERS),
                max_bytes=source.get("max_unpacked_bytes", MAX_BYTES),
            )
            entries += [Entry(path=rel, source=f"{item['url']}#{rel}", license=licence) for rel in kept]
            log.info("http %s: %d file(s) kept", name, len(kept))
        elif not patterns or matches(name, patterns):
            copy_into(path, dest, name, link=True)
            entries.append(Entry(path=name, source=item["url"], license=licence))
    if not entries:
        raise ValueError(f"http source: no file matches {patterns}; check `patterns`")
    return entries
