"""De-identified outputs: planted names, ids, dates and path parts reach no file under results/ nor any log."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pydicom
import pytest
from study_data import run_chain, write_series

from scisr.deid import Pseudonymizer, load_secret, read_key_map, reidentify
from scisr.index import read_index
from scisr.io.files import read_png16
from scisr.logs import log_to

PLANTED = {
    "PatientName": "DOE^JOHN",
    "PatientID": "MRN8843121",
    "PatientBirthDate": "19650203",
    "folder": "DOE^JOHN_19650203",
}
# every string that would give the person away, as text and as raw bytes in TIFF/PNG metadata
NEEDLES = ["DOE", "JOHN", "19650203", "MRN8843121", "IM0001", "IM9999"]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_planted_identifiers_appear_in_no_output(tmp_path: Path) -> None:
    source = tmp_path / "hospital_export"
    paths = write_series(
        source / PLANTED["folder"],
        16,
        patient_id=PLANTED["PatientID"],
        patient_name=PLANTED["PatientName"],
        birth_date=PLANTED["PatientBirthDate"],
    )
    assert pydicom.dcmread(paths[0]).PatientName == PLANTED["PatientName"]
    (source / PLANTED["folder"] / "IM9999.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00" * 50)  # unreadable
    work = tmp_path / "work"
    log = work / "logs" / "chain.log"
    with log_to(log):
        chain = run_chain(source, work, slab_gap=1)

    outputs = _files(work / "results") + _files(work / "logs")
    assert len(outputs) > 20 and any(p.suffix == ".png" for p in outputs) and any(p.suffix == ".tif" for p in outputs)
    leaks = []
    for path in outputs:
        data = path.read_bytes().upper()
        leaks += [f"{path.relative_to(work)}: {n}" for n in NEEDLES if n.encode() in data]
        leaks += [f"{path.relative_to(work)} (name): {n}" for n in NEEDLES if n in str(path.relative_to(work)).upper()]
    assert not leaks, leaks
    assert "extracted 16 frame(s) from 17 file(s)" in log.read_text()  # the log was written, just without names

    # the secret and the key map live outside results/, readable by the owner only
    for private in (chain["secret"], chain["key_map"]):
        assert not private.is_relative_to(work / "results")
        assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    # ... and trace every image back to its file and patient
    index = reidentify(read_index(chain["index"]), chain["key_map"])
    assert set(index["subject_id"]) - {""} == {PLANTED["PatientID"]}  # "": the unreadable file
    assert {Path(p).parent.name for p in index["source_path"]} == {PLANTED["folder"]}
    assert sorted(Path(p).name for p in index["source_path"]) == sorted([p.name for p in paths] + ["IM9999.dcm"])
    unreadable = index[index["source_path"].str.endswith("IM9999.dcm")]
    assert (
        unreadable["reason"].str.startswith(f"{PLANTED['folder']}/IM9999.dcm: ").all()
    )  # named again once re-identified


def test_secret_created_once_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "secret.key"
    first = load_secret(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(first) == 32
    assert load_secret(path) == first
    ids = Pseudonymizer(first)
    assert ids.subject("MRN8843121") == Pseudonymizer(load_secret(path)).subject("MRN8843121")
    assert ids.subject("MRN8843121") != Pseudonymizer(bytes(32)).subject("MRN8843121")
    assert ids.subject("") == ""
    assert list(read_key_map_roundtrip(ids, tmp_path)["original"]) == ["MRN8843121"]
    path.write_text("not hex\n")
    with pytest.raises(ValueError, match="not a SciSR secret"):
        load_secret(path)


def read_key_map_roundtrip(ids: Pseudonymizer, folder: Path):
    from scisr.deid import write_key_map

    write_key_map(ids.table(), folder / "keys.tsv")
    return read_key_map(folder / "keys.tsv")


def test_reader_warnings_quoting_header_values_stay_out_of_the_log(tmp_path: Path, monkeypatch) -> None:
    from pydicom.misc import warn_and_log

    import scisr.extract as extract

    real = extract.read_frames

    def chatty(path, **kwargs):
        warn_and_log("Invalid value for VR PN: 'DOE^JOHN'")  # pydicom warns and logs like this
        return real(path, **kwargs)

    monkeypatch.setattr(extract, "read_frames", chatty)
    write_series(tmp_path / "scans", 3)
    raw = tmp_path / "raw"
    from scisr.sources import fetch

    fetch({"kind": "local", "path": str(tmp_path / "scans")}, raw, raw / "MANIFEST.tsv")
    with log_to(tmp_path / "x.log"):
        extract.extract_dataset(raw, raw / "MANIFEST.tsv", tmp_path / "f", tmp_path / "i.tsv", secret=bytes(32))
    text = (tmp_path / "x.log").read_text()
    assert "DOE" not in text and "6 reader warning(s) and log line(s) not shown" in text  # 3 warnings, 3 log lines


def test_same_data_and_seed_give_the_same_split_under_another_secret(tmp_path):
    """Pseudonyms depend on the installation's secret; which images go to which split, and their LR noise, must not."""
    source = tmp_path / "source"
    for k in range(6):
        write_series(source / f"patient{k}", n=3, patient_id=f"P{k:04d}", seed=k)
    options = {"degradation": "psf", "degradation_options": {"gain": 50.0, "read_noise": 0.01}}
    contents = []
    for name in ("one", "two"):
        paths = run_chain(source, tmp_path / name, **options)
        assert paths["secret"].is_file()
        per_split = {}
        for split in ("train", "val", "test"):
            for side in ("HR", "LR"):
                files = sorted((paths["split"] / split / side).glob("*.png"))
                per_split[split, side] = sorted(hashlib.sha256(read_png16(f).tobytes()).hexdigest() for f in files)
        names = sorted(f.name for f in (paths["split"] / "train" / "HR").glob("*.png"))
        contents.append((per_split, names))
    (first, names_one), (second, names_two) = contents
    assert names_one != names_two  # other secrets, other pseudonyms ...
    assert first == second  # ... the same split and the same LR images
    assert all(first["test", side] and first["val", side] for side in ("HR", "LR"))
