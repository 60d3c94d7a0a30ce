"""A Kaggle dataset (``{"kind": "kaggle", "dataset": "owner/slug", ...}``) through Kaggle's HTTP API.

The dataset's ZIP comes from ``{base_url}/datasets/download/{owner}/{slug}`` (optionally
``?datasetVersionNumber=N``), the endpoint the official client and Kaggle's own curl example
use; public datasets download without an account. Credentials, when present, are sent as
HTTP basic auth: ``KAGGLE_USERNAME`` and ``KAGGLE_KEY`` from the environment, else
``kaggle.json`` in ``$KAGGLE_CONFIG_DIR`` or ``~/.kaggle``. They are never logged, never
written anywhere, and never sent to the storage host Kaggle redirects to. The ZIP is kept in
the cache (resumed after a kill) and unpacked safely; `patterns` picks the members to keep.

Why not `kagglehub` (Kaggle's own client, 1.0.3, checked 2026-12): its host comes from a fixed table
(kagglesdk's KAGGLE_API_ENVIRONMENT: www/api.kaggle.com, http://localhost, http://localhost:7777),
so it cannot be pointed at the 127.0.0.1 server on a free port that our tests start, nor at a
mirror (`base_url`); it unpacks ZIPs with `ZipFile.extractall` (no member, byte or link limits)
into its own ~/.cache/kagglehub; and it adds kagglesdk and protobuf for one GET with basic auth.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import urllib.parse
from pathlib import Path

from scisr.sources.archives import MAX_BYTES, MAX_MEMBERS, CorruptArchive, unpack_matching
from scisr.sources.manifest import Entry
from scisr.sources.net import DownloadError, download

log = logging.getLogger("scisr.sources")

SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def credentials() -> tuple[str, str] | None:
    """(username, key) from KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json, or None (anonymous)."""
    user, key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
    if user and key:
        return user, key
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle")
    path = folder / "kaggle.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return str(data["username"]), str(data["key"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(
            f"{path}: not a Kaggle API token file (JSON with username and key); fix or remove it"
        ) from None


def _auth_header(creds: tuple[str, str] | None) -> dict[str, str]:
    if creds is None:
        return {}
    token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def fetch_kaggle(source: dict, dest: Path, cache: Path) -> list[Entry]:
    """Download a Kaggle dataset's ZIP into the cache and unpack its matching files into `dest`."""
    slug = source.get("dataset", "")
    if not SLUG.match(slug):
        raise ValueError(f"kaggle source: dataset {slug!r} is not 'owner/name' as in kaggle.com/datasets/owner/name")
    if not source.get("base_url"):
        raise ValueError("kaggle source: base_url is missing (config/schema.yaml gives the default)")
    owner, name = slug.split("/")
    url = f"{source['base_url'].rstrip('/')}/datasets/download/{urllib.parse.quote(owner)}/{urllib.parse.quote(name)}"
    version = source.get("version")
    if version:
        url += f"?datasetVersionNumber={int(version)}"
    creds = credentials()
    log.info("kaggle %s: downloading %s", slug, "with your API credentials" if creds else "anonymously")
    zip_name = f"kaggle-{owner}-{name}" + (f"-v{int(version)}" if version else "") + ".zip"
    try:
        path = download(url, cache / zip_name, label=f"kaggle {slug}", headers=_auth_header(creds))
    except DownloadError as exc:
        if creds is None and any(f"HTTP {code}" in str(exc) for code in (401, 403)):
            raise DownloadError(
                f"{exc}. This dataset needs an account: set KAGGLE_USERNAME and KAGGLE_KEY, or put your "
                "API token in ~/.kaggle/kaggle.json (kaggle.com > Settings > API)"
            ) from None
        raise
    try:
        kept = unpack_matching(
            path,
            dest,
            source.get("patterns") or [],
            max_members=source.get("max_members", MAX_MEMBERS),
            max_bytes=source.get("max_unpacked_bytes", MAX_BYTES),
        )
    except CorruptArchive as exc:
        path.unlink()  # no checksum to vouch for it: fetch it again next time
        raise DownloadError(
            f"kaggle {slug}: {exc}; the cached copy was deleted, run again to download it anew"
        ) from None
    if not kept:
        raise ValueError(f"kaggle source {slug}: no file in the dataset matches {source.get('patterns')}")
    licence = source.get("license", "")
    return [Entry(path=rel, source=f"kaggle:{slug}/{rel}", license=licence) for rel in kept]
