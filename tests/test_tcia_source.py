"""The tcia source against an NBIA-shaped server on 127.0.0.1: selection, checks, resume, errors."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import time
import zipfile
from pathlib import Path

import pydicom
import pytest
from netserver import Reply, Request, Server
from netsource_helpers import make_retries_fast, run_fetch_in_child, strays, wait_for, with_defaults

from scisr.io.hashing import file_sha256
from scisr.sources import SourceUnreachable, fetch, read_manifest, tcia
from scisr.sources.builtin import PYDICOM, package_dir
from scisr.sources.net import DownloadError

COLLECTION = "Demo-Brain"
# (patient, study, series, modality)
SERIES = [
    ("PAT-A", "1.2.826.0.1.1", "1.2.826.0.1.1.1", "MR"),
    ("PAT-A", "1.2.826.0.1.1", "1.2.826.0.1.1.2", "MR"),
    ("PAT-B", "1.2.826.0.1.2", "1.2.826.0.1.2.1", "MR"),
    ("PAT-C", "1.2.826.0.1.3", "1.2.826.0.1.3.1", "MR"),
    ("PAT-C", "1.2.826.0.1.3", "1.2.826.0.1.3.9", "CT"),
]
# SeriesDescription per series, as getSeries reports it (two kinds across patients, as in Brain-Tumor-Progression)
DESCRIPTIONS = {
    "1.2.826.0.1.1.1": "FLAIRreg",
    "1.2.826.0.1.1.2": "T1post",
    "1.2.826.0.1.2.1": "T1post",
    "1.2.826.0.1.3.1": "FLAIRreg",
    "1.2.826.0.1.3.9": "T1post",
}
LICENSE = ("Creative Commons Attribution 4.0 International License", "https://creativecommons.org/licenses/by/4.0/")


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    make_retries_fast(monkeypatch)


def dicom_bytes(patient: str, study: str, series: str, number: int) -> bytes:
    ds = pydicom.dcmread(package_dir(PYDICOM) / "MR_small.dcm")
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = patient, study, series
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"{series}.{number}"
    ds.InstanceNumber = number
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def series_zip(patient: str, study: str, series: str, *, bad_md5: bool = False, images: int = 2) -> bytes:
    """A getImageWithMD5Hash-shaped ZIP: 00000001.dcm ... and md5hashes.csv (Filename,MD5Hash)."""
    out, rows = io.BytesIO(), []
    with zipfile.ZipFile(out, "w") as zf:
        for i in range(1, images + 1):
            name, data = f"{i:08d}.dcm", dicom_bytes(patient, study, series, i)
            zf.writestr(name, data)
            rows.append((name, "0" * 32 if bad_md5 and i == 1 else hashlib.md5(data).hexdigest()))
        text = io.StringIO()
        csv.writer(text).writerows([("Filename", "MD5Hash"), *rows])
        zf.writestr("md5hashes.csv", text.getvalue())
        zf.writestr("LICENSE", "CC BY 4.0")
    return out.getvalue()


def nbia(server: Server, *, bad_md5: str = "", hang: str = "") -> dict[str, bytes]:
    """Routes of an NBIA-shaped API under /v4/; returns the series ZIPs by UID."""
    zips = {uid: series_zip(p, st, uid, bad_md5=uid == bad_md5) for p, st, uid, _ in SERIES}

    def get_series(req: Request) -> Reply:
        rows = [
            {
                "SeriesInstanceUID": uid,
                "StudyInstanceUID": st,
                "PatientID": p,
                "Modality": m,
                "Collection": COLLECTION,
                "ImageCount": 2,
                "FileSize": len(zips[uid]),
                "BodyPartExamined": "BRAIN",
                "SeriesDescription": DESCRIPTIONS[uid],
            }
            for p, st, uid, m in SERIES
            if req.query.get("Collection") == COLLECTION and req.query.get("Modality", m) == m
        ]
        return Reply(json.dumps(rows).encode(), headers={"Content-Type": "application/json"})

    def get_metadata(req: Request) -> Reply:
        wanted = dict(pair.split("=", 1) for pair in req.body.decode().split("&"))["list"]
        wanted = set(wanted.replace("%2C", ",").split(","))
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(
            [
                "Subject ID",
                "Patient ID",
                "Study Instance UID",
                "Series Instance UID",
                "Image Count",
                "File Size",
                "License Name",
                "License URI",
            ]
        )
        for p, st, uid, _ in SERIES:
            if uid in wanted:
                writer.writerow([p, p, st, uid, 2, len(zips[uid]), *LICENSE])
        return Reply(text.getvalue().encode(), headers={"Content-Type": "text/csv"})

    def get_image(req: Request) -> Reply:
        uid = req.query["SeriesInstanceUID"]
        if uid == hang:
            time.sleep(60)
        return Reply(zips[uid], headers={"Content-Type": "application/octet-stream"})

    def get_image_plain(req: Request) -> Reply:
        assert req.query["NewFileNames"] == "Yes"
        return get_image(req)

    server.routes.update(
        {
            "/v4/getSeries": get_series,
            "/v4/getSeriesMetadata": get_metadata,
            "/v4/getImageWithMD5Hash": get_image,
            "/v4/getImage": get_image_plain,
        }
    )
    return zips


def tcia_source(server: Server, **extra) -> dict:
    return with_defaults({"kind": "tcia", "collection": COLLECTION, "base_url": f"{server.url}/v4/", **extra})


def test_tcia_selects_verifies_records_and_never_refetches_a_series(tmp_path: Path) -> None:
    with Server() as server:
        nbia(server)
        source = tcia_source(server, max_series=3)
        out, cache = tmp_path / "raw" / "mri", tmp_path / "cache" / "mri"
        table = fetch(source, out, out / "MANIFEST.tsv", cache_dir=cache)

        # One patient at a time in turn: the cap keeps three subjects, not two series of PAT-A.
        chosen = ["1.2.826.0.1.1.1", "1.2.826.0.1.2.1", "1.2.826.0.1.3.1"]
        assert sorted(set(table["series"])) == chosen
        assert dict(zip(table["series"], table["subject"])) == dict(zip(chosen, ["PAT-A", "PAT-B", "PAT-C"]))
        assert set(table["license"]) == {" ".join(LICENSE)}
        assert set(table["study"]) == {"1.2.826.0.1.1", "1.2.826.0.1.2", "1.2.826.0.1.3"}
        assert len(table) == 6 and not table["path"].str.contains("PAT-|md5hashes|LICENSE").any()
        for row in table.itertuples():
            ds = pydicom.dcmread(out / row.path)
            assert ds.SeriesInstanceUID == row.series == row.path.split("/")[0]
            assert file_sha256(out / row.path) == row.sha256
        manifest = read_manifest(out / "MANIFEST.tsv")
        assert list(manifest["series"]) == list(table["series"])
        assert [r.query["Modality"] for r in server.hits("/v4/getSeries")] == ["MR"]
        posted = server.hits("/v4/getSeriesMetadata")
        assert len(posted) == 1 and posted[0].method == "POST"
        assert len(server.hits("/v4/getImageWithMD5Hash")) == 3

        again = fetch(source, out, out / "MANIFEST.tsv", cache_dir=cache)
        assert len(server.hits("/v4/getImageWithMD5Hash")) == 3  # finished series are never fetched again
        assert list(again["sha256"]) == list(table["sha256"])
        assert strays(out.parent) == []


def test_tcia_caps_and_explicit_series(tmp_path: Path) -> None:
    with Server() as server:
        zips = nbia(server)
        sizes = {uid: len(z) for uid, z in zips.items()}
        budget = sizes["1.2.826.0.1.1.1"] + sizes["1.2.826.0.1.2.1"]
        table = fetch(
            tcia_source(server, max_bytes=budget), tmp_path / "a", tmp_path / "a.tsv", cache_dir=tmp_path / "c"
        )
        assert sorted(set(table["series"])) == ["1.2.826.0.1.1.1", "1.2.826.0.1.2.1"]
        picked = fetch(
            tcia_source(server, series_uids=["1.2.826.0.1.1.2"]),
            tmp_path / "b",
            tmp_path / "b.tsv",
            cache_dir=tmp_path / "c",
        )
        assert set(picked["series"]) == {"1.2.826.0.1.1.2"}
        plain = fetch(
            tcia_source(server, series_uids=["1.2.826.0.1.3.1"], md5=False),
            tmp_path / "p",
            tmp_path / "p.tsv",
            cache_dir=tmp_path / "c",
        )
        assert len(plain) == 2 and len(server.hits("/v4/getImage")) == 1
        with pytest.raises(ValueError, match=r"not in the collection.*1.2.826.0.1.3.9"):
            fetch(
                tcia_source(server, series_uids=["1.2.826.0.1.3.9"]),
                tmp_path / "d",
                tmp_path / "d.tsv",
                cache_dir=tmp_path / "c",
            )  # a CT series, filtered out by Modality MR
        with pytest.raises(ValueError, match=r"no series match.*check the collection name"):
            fetch(tcia_source(server, collection="Nope"), tmp_path / "e", tmp_path / "e.tsv", cache_dir=tmp_path / "c")


def test_tcia_series_description_keeps_only_matching_series_before_caps_and_uids(tmp_path: Path) -> None:
    with Server() as server:
        nbia(server)
        out = tmp_path / "raw" / "mri"
        table = fetch(
            tcia_source(server, series_description="^T1post$"), out, out / "MANIFEST.tsv", cache_dir=tmp_path / "c"
        )
        t1post = ["1.2.826.0.1.1.2", "1.2.826.0.1.2.1"]  # PAT-A's second series and PAT-B's; no FLAIRreg
        assert sorted(set(table["series"])) == t1post
        assert sorted(set(read_manifest(out / "MANIFEST.tsv")["series"])) == t1post
        assert sorted(set(table["subject"])) == ["PAT-A", "PAT-B"]
        fetched = [r.query["SeriesInstanceUID"] for r in server.hits("/v4/getImageWithMD5Hash")]
        assert sorted(fetched) == t1post

        # Case-insensitive, and applied before max_series: the one series kept is a T1post one
        # (unfiltered, the cap would take PAT-A's first series, 1.2.826.0.1.1.1, a FLAIRreg).
        capped = fetch(
            tcia_source(server, series_description="^t1POST$", max_series=1),
            tmp_path / "m",
            tmp_path / "m.tsv",
            cache_dir=tmp_path / "c",
        )
        assert set(capped["series"]) == {"1.2.826.0.1.1.2"}
        # A search, not a full match: "FLAIR" keeps the FLAIRreg series.
        flair = fetch(
            tcia_source(server, series_description="FLAIR"),
            tmp_path / "f",
            tmp_path / "f.tsv",
            cache_dir=tmp_path / "c",
        )
        assert sorted(set(flair["series"])) == ["1.2.826.0.1.1.1", "1.2.826.0.1.3.1"]
        # Applied before series_uids: a listed series the filter drops is reported missing.
        with pytest.raises(ValueError, match=r"series_uids not in the collection.*1.2.826.0.1.1.1"):
            fetch(
                tcia_source(server, series_description="^T1post$", series_uids=["1.2.826.0.1.1.1"]),
                tmp_path / "u",
                tmp_path / "u.tsv",
                cache_dir=tmp_path / "c",
            )


def test_tcia_series_description_matching_nothing_lists_the_available_descriptions(tmp_path: Path) -> None:
    with Server() as server:
        nbia(server)
        with pytest.raises(
            ValueError,
            match=r"no series match.*series_description '\^T2\$' matched none.*"
            r"available: 'FLAIRreg', 'T1post'$",
        ):
            fetch(
                tcia_source(server, series_description="^T2$"),
                tmp_path / "o",
                tmp_path / "o.tsv",
                cache_dir=tmp_path / "c",
            )
        assert server.hits("/v4/getSeriesMetadata") == [] and server.hits("/v4/getImageWithMD5Hash") == []


def test_tcia_series_description_lists_at_most_ten_sorted_descriptions(tmp_path: Path) -> None:
    with Server() as server:
        rows = [
            {"SeriesInstanceUID": f"1.2.3.{i}", "PatientID": f"P{i}", "Series Description": f"D{i:02d}"}
            for i in range(12, 0, -1)
        ]
        server.routes["/v4/getSeries"] = Reply(json.dumps(rows).encode())
        with pytest.raises(ValueError) as caught:
            tcia.list_series(tcia_source(server, series_description="nothing"), "tcia X")
        message = str(caught.value)
        assert "matched none of the 12 distinct" in message
        assert message.endswith("available: " + ", ".join(repr(f"D{i:02d}") for i in range(1, 11)) + " (and 2 more)")


def test_tcia_invalid_series_description_regex_names_the_key(tmp_path: Path) -> None:
    with Server() as server:
        nbia(server)
        with pytest.raises(
            ValueError,
            match=r"series_description 'T1\(' is not a valid regular expression: "
            r"missing \)",
        ):
            fetch(
                tcia_source(server, series_description="T1("),
                tmp_path / "o",
                tmp_path / "o.tsv",
                cache_dir=tmp_path / "c",
            )
        assert server.requests == []  # refused before asking the server


def test_tcia_md5_mismatch_leaves_nothing(tmp_path: Path) -> None:
    with Server() as server:
        nbia(server, bad_md5="1.2.826.0.1.2.1")
        out, cache = tmp_path / "raw" / "mri", tmp_path / "cache"
        with pytest.raises(DownloadError, match=r"tcia series 1.2.826.0.1.2.1: 00000001.dcm has MD5"):
            fetch(tcia_source(server), out, out / "MANIFEST.tsv", cache_dir=cache)
        assert not out.exists() and strays(out.parent) == []
        assert not (cache / "1.2.826.0.1.2.1").exists()
        assert [p.name for p in cache.iterdir() if "1.2.826.0.1.2.1" in p.name] == []  # bad ZIP deleted too


def test_tcia_killed_run_resumes_at_series_granularity_and_leaves_no_stray_folder(tmp_path: Path) -> None:
    out, cache = tmp_path / "raw" / "mri", tmp_path / "cache" / "mri"
    with Server() as server:
        nbia(server, hang="1.2.826.0.1.2.1")  # the second series in order never arrives
        child = run_fetch_in_child(tcia_source(server, max_series=3), out, cache)
        try:
            wait_for(
                lambda: (
                    (cache / "1.2.826.0.1.1.1" / "series.json").is_file()
                    and len(server.hits("/v4/getImageWithMD5Hash")) == 2
                )
            )
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        stray = strays(out.parent)
        assert len(stray) == 1, "the killed run leaves its staging folder"
        umask = os.umask(0)
        os.umask(umask)
        assert (out.parent / stray[0]).stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's 0700

    with Server() as server:
        nbia(server)
        table = fetch(tcia_source(server, max_series=3), out, out / "MANIFEST.tsv", cache_dir=cache)
        fetched = [r.query["SeriesInstanceUID"] for r in server.hits("/v4/getImageWithMD5Hash")]
        assert fetched == ["1.2.826.0.1.2.1", "1.2.826.0.1.3.1"]  # the finished first series is not fetched again
        assert len(set(table["series"])) == 3
        assert strays(out.parent) == []


def test_unreachable_server_names_the_source_and_the_local_way(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: connections are refused
    source = with_defaults({"kind": "tcia", "collection": COLLECTION, "base_url": f"http://127.0.0.1:{port}/v4/"})
    out = tmp_path / "raw" / "mri"
    with pytest.raises(
        SourceUnreachable,
        match=r"mri, tcia source: tcia Demo-Brain: cannot reach 127.0.0.1:\d+ "
        r"after 3 tries.*kind: local, path: FOLDER",
    ):
        fetch(source, out, out / "MANIFEST.tsv", cache_dir=tmp_path / "cache")
    assert not out.exists() and strays(out.parent) == []
