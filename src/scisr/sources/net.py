"""HTTP for the network sources: bounded retries with backoff, resumable downloads, clear errors.

Only the standard library (urllib). A download goes to ``<target>.part`` and is resumed with an
HTTP Range request after a dropped connection or a killed process; it is renamed onto `target`
only when its size and SHA-256 match what was expected. Credentials are passed as headers that
urllib does not carry across redirects (a redirect to a storage host never sees them) and are
never logged.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from scisr.io.hashing import file_sha256

log = logging.getLogger("scisr.sources")

RETRIES = 4  # tries after the first one
BACKOFF_S = 2.0  # wait before retry n: BACKOFF_S * 2**n, at most MAX_BACKOFF_S
MAX_BACKOFF_S = 60.0
TIMEOUT_S = 60.0
CHUNK = 1 << 20
USER_AGENT = "scisr (+https://github.com/; research workflow)"
RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
TRANSIENT = (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError)


class SourceUnreachable(OSError):
    """A network source that cannot be reached (after retries)."""


class DownloadError(ValueError):
    """A download that arrived but is wrong (size, checksum, HTTP error status)."""


def local_hint() -> str:
    """How to supply a network source's files by hand."""
    return (
        "download the files yourself and point the dataset at their folder with "
        "`source: {kind: local, path: FOLDER}` (e.g. in a file passed with `snakemake --configfile`)"
    )


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return f"{type(exc).__name__}: {reason if reason is not None else exc}"


def _wait(attempt: int, label: str, exc: BaseException) -> None:
    delay = min(BACKOFF_S * 2**attempt, MAX_BACKOFF_S)
    log.warning("%s: %s; try %d of %d in %.0f s", label, _describe(exc), attempt + 2, RETRIES + 1, delay)
    time.sleep(delay)


def _http_error(label: str, url: str, exc: urllib.error.HTTPError) -> DownloadError:
    hint = {
        401: "the server wants credentials",
        403: "access is forbidden (credentials missing or without the rights, or terms not accepted)",
        404: "not found: check the name or URL in the config",
    }.get(exc.code, exc.reason)
    return DownloadError(f"{label}: HTTP {exc.code} from {_host(url)} for {urllib.parse.urlsplit(url).path}: {hint}")


def _unreachable(label: str, url: str, exc: BaseException) -> SourceUnreachable:
    return SourceUnreachable(
        f"{label}: cannot reach {_host(url)} after {RETRIES + 1} tries ({_describe(exc)}). "
        f"Check the network or proxy, or {local_hint()}"
    )


def _request(url: str, headers: dict[str, str] | None, data: dict[str, str] | None) -> urllib.request.Request:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers={"User-Agent": USER_AGENT})
    for key, value in (headers or {}).items():
        req.add_unredirected_header(key, value)  # never forwarded to a redirect's host
    return req


def fetch_bytes(
    url: str, *, label: str, headers: dict[str, str] | None = None, data: dict[str, str] | None = None
) -> bytes:
    """GET (or POST form `data` to) `url` and return the body, retrying transient failures."""
    for attempt in range(RETRIES + 1):
        try:
            with urllib.request.urlopen(_request(url, headers, data), timeout=TIMEOUT_S) as resp:
                return resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code not in RETRY_STATUS or attempt == RETRIES:
                raise _http_error(label, url, exc) from None
            _wait(attempt, label, exc)
        except TRANSIENT as exc:
            if attempt == RETRIES:
                raise _unreachable(label, url, exc) from None
            _wait(attempt, label, exc)
    raise AssertionError("unreachable")


def _resume_from(resp: http.client.HTTPResponse, have: int) -> int:
    """Bytes of the partial file the response continues from (0: the server sent it whole)."""
    if resp.status != 206:
        return 0
    first = resp.headers.get("Content-Range", "").removeprefix("bytes ").split("-", 1)[0]
    return have if first.strip() == str(have) else 0


def _receive(resp: http.client.HTTPResponse, part: Path, have: int, size: int | None, label: str) -> None:
    start = _resume_from(resp, have)
    length = resp.headers.get("Content-Length")
    total = start + int(length) if length and length.isdigit() else size
    if start:
        log.info("%s: resuming at byte %d", label, start)
    with (
        open(part, "r+b" if start else "wb") as out,
        tqdm(
            total=total,
            initial=start,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            file=sys.stderr,
            mininterval=5.0,
            ascii=True,
        ) as bar,
    ):
        out.seek(start)
        out.truncate()
        while block := resp.read(CHUNK):
            out.write(block)
            bar.update(len(block))
    got = part.stat().st_size
    if total is not None and got < total:
        raise http.client.IncompleteRead(b"", total - got)


def download(
    url: str,
    target: str | os.PathLike,
    *,
    label: str,
    sha256: str | None = None,
    size: int | None = None,
    headers: dict[str, str] | None = None,
) -> Path:
    """Download `url` to `target`, resuming `<target>.part`; rename only after size and sha256 match.

    A finished `target` that matches is reused without a request. A mismatch removes the partial
    file and raises DownloadError; nothing is left at `target`.
    """
    target = Path(target)
    part = target.with_name(target.name + ".part")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        if _matches(target, sha256, size):
            log.info("%s: already downloaded (%s)", label, target.name)
            return target
        target.unlink()
    for attempt in range(RETRIES + 1):
        have = part.stat().st_size if part.exists() else 0
        if size is not None and have >= size:
            if have > size:
                part.unlink()
                continue
            break
        range_headers = {"Range": f"bytes={have}-"} if have else {}
        req = _request(url, headers, None)
        for key, value in range_headers.items():
            req.add_header(key, value)  # a redirect to storage keeps the range
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                _receive(resp, part, have, size, label)
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # asked past the end: the partial is complete or wrong
                break
            if exc.code not in RETRY_STATUS or attempt == RETRIES:
                raise _http_error(label, url, exc) from None
            _wait(attempt, label, exc)
        except TRANSIENT as exc:
            if attempt == RETRIES:
                if part.exists() and part.stat().st_size > 0:
                    raise DownloadError(
                        f"{label}: the connection to {_host(url)} kept failing ({_describe(exc)}); "
                        f"{part.stat().st_size} bytes are kept in {part} and the next run resumes there"
                    ) from None
                raise _unreachable(label, url, exc) from None
            _wait(attempt, label, exc)
    if not part.exists():
        raise DownloadError(f"{label}: nothing was received from {_host(url)}")
    problem = _mismatch(part, sha256, size)
    if problem:
        part.unlink()
        raise DownloadError(
            f"{label}: {problem}; the partial download was deleted. The file at {url} is not the one the "
            "config expects: check the URL, sha256 and size, or the server's copy"
        )
    os.replace(part, target)
    return target


def _mismatch(path: Path, sha256: str | None, size: int | None) -> str:
    got = path.stat().st_size
    if size is not None and got != size:
        return f"size {got} bytes, expected {size}"
    if sha256:
        digest = file_sha256(path)
        if digest != sha256.lower():
            return f"sha256 {digest}, expected {sha256.lower()}"
    return ""


def _matches(path: Path, sha256: str | None, size: int | None) -> bool:
    return not _mismatch(path, sha256, size)
