"""kaggle and http sources against servers on 127.0.0.1: downloads, resume, checksums, secrets."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import signal
import zipfile
from pathlib import Path

import pytest
from netserver import Reply, Request, Server
from netsource_helpers import make_retries_fast, run_fetch_in_child, strays, wait_for, with_defaults

from scisr.io.hashing import file_sha256
from scisr.sources import fetch
from scisr.sources.net import DownloadError


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    make_retries_fast(monkeypatch)


def kaggle_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("space_images/galaxy/g1.jpg", b"\xff\xd8jpeg-1")
        zf.writestr("space_images/nebula/n1.png", b"\x89PNGpng-1")
        zf.writestr("space_images/README.txt", b"about")
    return out.getvalue()


def kaggle_routes(server: Server, *, private: bool = False) -> None:
    def download(req: Request) -> Reply:
        if private and "Authorization" not in req.headers:
            return Reply(b'{"message": "Unauthorized"}', 401)
        return Reply(b"", 302, headers={"Location": f"{server.url}/storage/blob.zip?sig=abc"})

    server.routes["/api/v1/datasets/download/someone/space-images"] = download
    server.routes["/storage/blob.zip"] = Reply(kaggle_zip(), headers={"Content-Type": "application/zip"})


def kaggle_source(server: Server) -> dict:
    return with_defaults(
        {
            "kind": "kaggle",
            "dataset": "someone/space-images",
            "base_url": f"{server.url}/api/v1",
            "patterns": ["*.jpg", "*.png"],
            "license": "CC0",
        }
    )


def test_kaggle_public_dataset_downloads_anonymously(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAGGLE_USERNAME", "KAGGLE_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-such-dir"))
    with Server() as server:
        kaggle_routes(server)
        table = fetch(kaggle_source(server), tmp_path / "astro", tmp_path / "m.tsv", cache_dir=tmp_path / "cache")
        assert list(table["path"]) == ["space_images/galaxy/g1.jpg", "space_images/nebula/n1.png"]
        assert set(table["license"]) == {"CC0"}
        assert all("Authorization" not in r.headers for r in server.requests)


def test_kaggle_credentials_are_sent_only_to_kaggle_and_never_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    user, key = "someuser", "0123456789abcdef-secret-key"
    config_dir = tmp_path / "kaggle-config"
    config_dir.mkdir()
    (config_dir / "kaggle.json").write_text(json.dumps({"username": user, "key": key}))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
    with Server() as server, caplog.at_level(logging.DEBUG):
        kaggle_routes(server, private=True)
        out = tmp_path / "out"
        fetch(kaggle_source(server), out, out / "MANIFEST.tsv", cache_dir=tmp_path / "cache")
        api, storage = server.hits("/api/v1/datasets/download/someone/space-images"), server.hits("/storage/blob.zip")
        expected = "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()
        assert [r.headers.get("Authorization") for r in api] == [expected]
        assert storage and all("Authorization" not in r.headers for r in storage)  # not leaked to the redirect
    secret_forms = [key, base64.b64encode(f"{user}:{key}".encode()).decode()]
    written = [p for root in (out, tmp_path / "cache") for p in root.rglob("*") if p.is_file()]
    for text in [caplog.text, *(p.read_bytes().decode("latin-1") for p in written)]:
        assert not any(s in text for s in secret_forms)

    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "none"))
    with Server() as server:
        kaggle_routes(server, private=True)
        with pytest.raises(DownloadError, match=r"HTTP 401.*KAGGLE_USERNAME and KAGGLE_KEY"):
            fetch(kaggle_source(server), tmp_path / "o2", tmp_path / "m2.tsv", cache_dir=tmp_path / "cache2")


def payload_zip(n_bytes: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("DIV2K_valid_HR/0801.png", os.urandom(n_bytes))
        zf.writestr("DIV2K_valid_HR/0802.png", b"\x89PNG small")
    return out.getvalue()


def http_source(server: Server, data: bytes, **item) -> dict:
    entry = {
        "url": f"{server.url}/files/DIV2K_valid_HR.zip",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        **item,
    }
    return with_defaults({"kind": "http", "files": [entry], "patterns": ["*.png"]})


def test_http_resumes_a_dropped_connection_with_range(tmp_path: Path) -> None:
    data = payload_zip(3_000_000)
    with Server() as server:
        calls = []

        def flaky(req: Request) -> Reply:
            calls.append(req)
            return Reply(data, drop_after=1_000_000 if len(calls) == 1 else None)

        server.routes["/files/DIV2K_valid_HR.zip"] = flaky
        out = tmp_path / "generic"
        table = fetch(http_source(server, data), out, out / "MANIFEST.tsv", cache_dir=tmp_path / "cache")
    assert len(calls) == 2 and "Range" not in calls[0].headers
    start = int(calls[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= 1_000_000  # the second request continued the partial file
    assert list(table["path"]) == ["DIV2K_valid_HR/0801.png", "DIV2K_valid_HR/0802.png"]
    assert file_sha256(tmp_path / "cache" / "DIV2K_valid_HR.zip") == hashlib.sha256(data).hexdigest()


def test_http_checksum_mismatch_leaves_nothing_behind(tmp_path: Path) -> None:
    data = payload_zip(10_000)
    with Server() as server:
        server.routes["/files/DIV2K_valid_HR.zip"] = Reply(data[:-1] + b"X")
        out, cache = tmp_path / "raw" / "generic", tmp_path / "cache"
        with pytest.raises(DownloadError, match=r"sha256 [0-9a-f]{64}, expected .*partial download was deleted"):
            fetch(http_source(server, data), out, out / "MANIFEST.tsv", cache_dir=cache)
    assert not out.exists() and strays(out.parent) == []
    assert list(cache.iterdir()) == []


def test_http_killed_download_resumes_on_rerun_and_leaves_no_stray_folder(tmp_path: Path) -> None:
    data = payload_zip(4_000_000)
    out, cache = tmp_path / "raw" / "generic", tmp_path / "cache" / "generic"
    with Server() as server:
        server.routes["/files/DIV2K_valid_HR.zip"] = Reply(data, delay_per_chunk=0.05)  # ~3 s in all
        child = run_fetch_in_child(http_source(server, data), out, cache)
        part = cache / "DIV2K_valid_HR.zip.part"
        try:
            wait_for(lambda: part.exists() and part.stat().st_size > 500_000)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        kept = part.stat().st_size
        assert 0 < kept < len(data) and len(strays(out.parent)) == 1

        server.routes["/files/DIV2K_valid_HR.zip"] = Reply(data)
        table = fetch(http_source(server, data), out, out / "MANIFEST.tsv", cache_dir=cache)
        assert server.requests[-1].headers["Range"] == f"bytes={kept}-"
    assert len(table) == 2 and strays(out.parent) == [] and not part.exists()
