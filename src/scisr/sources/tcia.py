"""A collection of The Cancer Imaging Archive through the public NBIA REST API v4 (``kind: tcia``).

1. ``getSeries?Collection=&Modality=[&BodyPartExamined=]`` (JSON) lists the series; a
   `series_description` regular expression (searched case-insensitively in each series'
   SeriesDescription, e.g. ``^T1post$``) keeps only the matching ones, then an explicit
   `series_uids` list narrows them. Series are taken one patient at a time in turn (patients
   sorted, each patient's series by study and series UID), so caps keep many subjects, until
   `max_series` or `max_bytes` (the sum of the API's FileSize) would be exceeded.
2. ``getSeriesMetadata`` (POST, form ``list=`` of UIDs, CSV) gives each series' Patient ID,
   Study/Series Instance UID, Image Count, File Size and License Name/URI for MANIFEST.tsv.
3. Each series comes as a ZIP: ``getImageWithMD5Hash?SeriesInstanceUID=`` (with `md5`, the
   default; the ZIP holds ``md5hashes.csv`` with columns Filename, MD5Hash, and every listed
   file is checked) or ``getImage?NewFileNames=Yes&SeriesInstanceUID=``. It is unpacked
   safely into ``<cache>/<SeriesInstanceUID>/`` with a ``series.json`` record, and only then
   is that folder renamed into place: a finished series is never fetched again, a series cut
   off by a kill resumes its ZIP (HTTP Range) on the next run.
Files land in the output folder as ``<SeriesInstanceUID>/<file>`` (no patient ID in any path).

Why not `tcia-utils` (NCI's client, 3.3.5, checked 2026-12): its host is fixed to
``https://{nbia|nlst}.cancerimagingarchive.net`` (any other `api_url` is refused), so tests cannot
point it at a 127.0.0.1 server; `downloadSeries` logs a failed series and returns None instead of
raising, does not resume, does not check the MD5 list, and unpacks with `ZipFile.extractall`; importing
it calls `logging.basicConfig(level=INFO)`; and it pulls 24 more packages (IPython, plotly, idc-index
with its 79 MB index, pyarrow 55 MB, duckdb 22 MB: 172 MB of wheels) for four REST calls.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import shutil
import urllib.parse
from collections import defaultdict
from pathlib import Path

from scisr.sources.archives import MAX_BYTES, MAX_MEMBERS, CorruptArchive, unpack
from scisr.sources.manifest import Entry, copy_into
from scisr.sources.net import DownloadError, download, fetch_bytes

log = logging.getLogger("scisr.sources")

MD5_LIST = "md5hashes.csv"
NOT_IMAGES = {MD5_LIST.lower(), "license", "license.txt"}
RECORD = "series.json"
CHUNK_UIDS = 500
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")  # a DICOM UID: digits and dots, at most 64 characters


def _key(name: str) -> str:
    return "".join(name.split()).lower()


def _field(row: dict, *names: str) -> str:
    """A value of `row` under any spelling of `names` (spaces and case ignored)."""
    keyed = {_key(k): v for k, v in row.items() if k is not None}
    for name in names:
        value = keyed.get(_key(name))
        if value not in (None, ""):
            return str(value)
    return ""


def _int(value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        return 0


def _description_filter(source: dict, label: str) -> re.Pattern | None:
    """The compiled `series_description` regular expression (case-insensitive), or None when unset."""
    pattern = source.get("series_description")
    if pattern in (None, ""):
        return None
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"{label}: series_description {pattern!r} is not a valid regular expression: {exc}") from None


def list_series(source: dict, label: str) -> list[dict]:
    """The series `getSeries` returns for the source's filters, deduplicated by UID."""
    described = _description_filter(source, label)
    params = {"Collection": source["collection"]}
    if source.get("modality"):
        params["Modality"] = source["modality"]
    if source.get("body_part"):
        params["BodyPartExamined"] = source["body_part"]
    url = f"{source['base_url'].rstrip('/')}/getSeries?{urllib.parse.urlencode(params)}"
    body = fetch_bytes(url, label=label)
    try:
        rows = json.loads(body) if body.strip() else []
    except ValueError:
        raise DownloadError(f"{label}: getSeries did not return JSON (starts {body[:80]!r})") from None
    if not isinstance(rows, list):
        raise DownloadError(f"{label}: getSeries returned {type(rows).__name__}, expected a list")
    unique = {}
    for row in rows:
        uid = _field(row, "SeriesInstanceUID") if isinstance(row, dict) else ""
        if not (UID.match(uid) and len(uid) <= 64):
            raise DownloadError(f"{label}: getSeries returned a series without a valid SeriesInstanceUID: {row!r:.120}")
        unique.setdefault(uid, row)
    no_match = (
        f"{label}: no series match {params}; check the collection name (as on cancerimagingarchive.net), "
        "modality and body_part"
    )
    if described is not None and unique:
        available = sorted({_field(row, "SeriesDescription", "Series Description") for row in unique.values()})
        unique = {
            uid: row
            for uid, row in unique.items()
            if described.search(_field(row, "SeriesDescription", "Series Description"))
        }
        if not unique:
            shown = ", ".join(repr(d) for d in available[:10])
            more = f" (and {len(available) - 10} more)" if len(available) > 10 else ""
            raise ValueError(
                f"{no_match}; series_description {described.pattern!r} matched none of the {len(available)} "
                f"distinct SeriesDescription value(s) available: {shown}{more}"
            )
    wanted = source.get("series_uids") or []
    if wanted:
        missing = [uid for uid in wanted if uid not in unique]
        if missing:
            raise ValueError(f"{label}: series_uids not in the collection with these filters: {', '.join(missing)}")
        unique = {uid: unique[uid] for uid in wanted}
    if not unique:
        raise ValueError(no_match)
    return list(unique.values())


def select(series: list[dict], max_series: int | None, max_bytes: int | None) -> list[dict]:
    """Series in patient-interleaved order, cut at the caps (None: no cap)."""
    by_patient = defaultdict(list)
    for row in series:
        by_patient[_field(row, "PatientID", "Patient ID")].append(row)
    queues = [
        sorted(rows, key=lambda r: (_field(r, "StudyInstanceUID"), _field(r, "SeriesInstanceUID")))
        for _, rows in sorted(by_patient.items())
    ]
    ordered = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    chosen, total = [], 0
    for row in ordered:
        size = _int(_field(row, "FileSize", "File Size"))
        if max_series is not None and len(chosen) >= max_series:
            break
        if max_bytes is not None and total + size > max_bytes:
            break
        chosen.append(row)
        total += size
    return chosen


def series_metadata(base_url: str, uids: list[str], label: str) -> dict[str, dict]:
    """Series UID -> getSeriesMetadata row (Patient ID, Study UID, Image Count, File Size, licence)."""
    out = {}
    for start in range(0, len(uids), CHUNK_UIDS):
        chunk = uids[start : start + CHUNK_UIDS]
        body = fetch_bytes(f"{base_url.rstrip('/')}/getSeriesMetadata", label=label, data={"list": ",".join(chunk)})
        for row in csv.DictReader(io.StringIO(body.decode("utf-8-sig"))):
            uid = _field(row, "Series Instance UID", "SeriesInstanceUID", "Series UID")
            if uid:
                out[uid] = row
    return out


def check_md5(folder: Path, files: list[str], label: str) -> bool:
    """Check the files of an unpacked series against its md5hashes.csv; False when there is none."""
    listing = folder / MD5_LIST
    if not listing.is_file():
        return False
    rows = list(csv.DictReader(io.StringIO(listing.read_text(encoding="utf-8-sig"))))
    expected = {_field(r, "Filename"): _field(r, "MD5Hash").lower() for r in rows}
    images = {f for f in files if f.lower() not in NOT_IMAGES}
    if set(expected) != images:
        raise DownloadError(
            f"{label}: {MD5_LIST} lists {len(expected)} file(s) but the ZIP holds {len(images)} "
            f"(unlisted: {sorted(images - set(expected))[:5]}, absent: {sorted(set(expected) - images)[:5]})"
        )
    for name, md5 in expected.items():
        digest = hashlib.md5(usedforsecurity=False)
        with open(folder / name, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() != md5:
            raise DownloadError(f"{label}: {name} has MD5 {digest.hexdigest()}, the archive lists {md5}")
    return True


def _cached(cache: Path, uid: str) -> dict | None:
    """The record of a finished series in the cache, or None when it must be fetched."""
    record = cache / uid / RECORD
    if not record.is_file():
        return None
    try:
        data = json.loads(record.read_text())
        if all((cache / uid / name).is_file() for name in data["files"]):
            return data
    except (ValueError, KeyError, TypeError):
        pass
    log.warning("tcia %s: cached series is incomplete; fetching it again", uid)
    return None


def fetch_series(source: dict, uid: str, cache: Path, expected_images: int) -> dict:
    """Download, verify and unpack one series into `cache/<uid>/` (skipped when already there)."""
    label = f"tcia series {uid}"
    done = _cached(cache, uid)
    if done is not None:
        log.info("%s: already fetched (%d files)", label, len(done["files"]))
        return done
    md5 = source.get("md5", True)
    query = urllib.parse.urlencode({"SeriesInstanceUID": uid})
    endpoint = f"getImageWithMD5Hash?{query}" if md5 else f"getImage?NewFileNames=Yes&{query}"
    zip_path = download(f"{source['base_url'].rstrip('/')}/{endpoint}", cache / f".{uid}.zip", label=label)
    work = cache / f".{uid}.unpacking"
    shutil.rmtree(work, ignore_errors=True)
    try:
        files = unpack(
            zip_path,
            work,
            max_members=source.get("max_members", MAX_MEMBERS),
            max_bytes=source.get("max_unpacked_bytes", MAX_BYTES),
        )
        verified = check_md5(work, files, label)
    except (CorruptArchive, DownloadError):
        zip_path.unlink(missing_ok=True)  # bad bytes: the next run downloads the series anew
        shutil.rmtree(work, ignore_errors=True)
        raise
    if md5 and not verified:
        log.warning("%s: the server sent no %s; files are not MD5-checked", label, MD5_LIST)
    images = [f for f in files if f.lower() not in NOT_IMAGES]
    if expected_images and len(images) != expected_images:
        log.warning("%s: %d file(s) received, the API's Image Count is %d", label, len(images), expected_images)
    record = {"series": uid, "files": images, "md5_verified": verified}
    (work / RECORD).write_text(json.dumps(record, indent=1))
    shutil.rmtree(cache / uid, ignore_errors=True)
    work.rename(cache / uid)
    zip_path.unlink()
    return record


def fetch_tcia(source: dict, dest: Path, cache: Path) -> list[Entry]:
    """Fetch the selected series of a TCIA collection into `dest/<SeriesInstanceUID>/`."""
    for key in ("collection", "base_url"):
        if not source.get(key):
            raise ValueError(f"tcia source: `{key}` is missing")
    label = f"tcia {source['collection']}"
    chosen = select(list_series(source, label), source.get("max_series"), source.get("max_bytes"))
    if not chosen:
        raise ValueError(f"{label}: the first series is larger than max_bytes {source.get('max_bytes')}; raise it")
    uids = [_field(row, "SeriesInstanceUID") for row in chosen]
    meta = series_metadata(source["base_url"], uids, label)
    total = sum(_int(_field(r, "FileSize", "File Size")) for r in chosen)
    log.info("%s: %d series chosen, %.1f MB by the API's sizes", label, len(chosen), total / 1e6)
    cache.mkdir(parents=True, exist_ok=True)
    entries = []
    for row in chosen:
        uid = _field(row, "SeriesInstanceUID")
        info = {**row, **meta.get(uid, {})}
        patient = _field(info, "Patient ID", "PatientID")
        study = _field(info, "Study Instance UID", "StudyInstanceUID")
        licence = " ".join(
            filter(None, [_field(info, "License Name", "LicenseName"), _field(info, "License URI", "LicenseURI")])
        )
        record = fetch_series(source, uid, cache, _int(_field(info, "Image Count", "ImageCount")))
        for name in record["files"]:
            rel = f"{uid}/{name}"
            copy_into(cache / uid / name, dest, rel, link=True)
            entries.append(
                Entry(
                    path=rel,
                    source=f"tcia:{source['collection']}/{rel}",
                    subject=patient,
                    series=uid,
                    study=study,
                    license=licence,
                )
            )
    return entries
