"""Extract phase: float32 TIFF frames in physical units, honest skips, duplicates resolved."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from pydicom.uid import RLELossless, generate_uid

from scisr.extract import extract_dataset, image_bases
from scisr.index import INDEX_COLUMNS
from scisr.io.files import read_tiff
from scisr.sources import fetch
from scisr.sources.manifest import Entry, build_manifest, write_manifest

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
RNG = np.random.default_rng(7)


@pytest.fixture()
def raw(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """A raw folder: one MR image in three encodings and a renamed copy, junk, PNGs, a CT."""
    raw = tmp_path / "raw"
    raw.mkdir()
    ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    stored = ds.pixel_array.astype(np.float64)
    ds.RescaleSlope, ds.RescaleIntercept = 2.5, -1024
    ds.save_as(raw / "good.dcm")
    ds.LossyImageCompression = "01"  # same SOP instance, flagged lossy; its name sorts first
    ds.save_as(raw / "a_lossy.dcm")
    del ds.LossyImageCompression
    ds.compress(RLELossless, generate_instance_uid=False)
    ds.save_as(raw / "good_rle.dcm")
    big = pydicom.dcmread(PYDICOM_FILES / "MR_small_bigendian.dcm")
    big.SOPInstanceUID = generate_uid()  # another instance with the very same pixels
    big.RescaleSlope, big.RescaleIntercept = 2.5, -1024
    big.save_as(raw / "renamed_bigendian.dcm")
    ct = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    ct.Modality, ct.SOPInstanceUID = "CT", generate_uid()
    ct.PixelData = (ct.pixel_array + 1).astype(np.int16).tobytes()
    ct.save_as(raw / "ct.dcm")
    (raw / "x.dcm").write_bytes(RNG.integers(0, 256, 500, dtype=np.uint8).tobytes())
    rgb = RNG.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(raw / "photo.png")
    Image.fromarray(np.zeros((8, 8), np.uint8) + np.eye(8, dtype=np.uint8)).save(raw / "tiny.png")
    Image.fromarray(np.full((20, 20), 7, np.uint8)).save(raw / "flat.png")
    names = sorted(p.name for p in raw.iterdir())
    table = build_manifest(raw, [Entry(path=n, source=f"test:{n}", subject="") for n in names])
    write_manifest(table, tmp_path / "MANIFEST.tsv")
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    return raw, tmp_path / "MANIFEST.tsv", stored * 2.5 - 1024, luma


def by_path(index: pd.DataFrame) -> dict[str, dict]:
    return {row["source_path"]: row for row in index.to_dict("records")}


def test_small_folder(tmp_path: Path, raw) -> None:
    raw_dir, manifest, physical, luma = raw
    frames, index_path = tmp_path / "frames", tmp_path / "index.tsv"
    frames.mkdir()
    (frames / "stale_f000.tif").write_bytes(b"old")
    index = extract_dataset(raw_dir, manifest, frames, index_path)
    assert list(index.columns) == INDEX_COLUMNS
    assert list(pd.read_csv(index_path, sep="\t").columns) == INDEX_COLUMNS
    rows = by_path(index)

    assert rows["good.dcm"]["status"] == "ok" and rows["good.dcm"]["image_id"] == "good_f000"
    assert rows["good.dcm"]["subject_id"] == "4MR1" and rows["good.dcm"]["original_dtype"] == "int16"
    assert (rows["good.dcm"]["rows"], rows["good.dcm"]["cols"], rows["good.dcm"]["frame"]) == (64, 64, 0)
    assert rows["a_lossy.dcm"]["reason"] == "duplicate of good_f000 (same SOP instance, lossy copy)"
    assert rows["good_rle.dcm"]["reason"] == "duplicate of good_f000 (same SOP instance, another encoding)"
    assert rows["renamed_bigendian.dcm"]["reason"] == "duplicate of good_f000 (identical pixels)"
    assert rows["ct.dcm"]["status"] == "ok"
    assert rows["x.dcm"]["status"] == "skipped" and rows["x.dcm"]["frame"] == -1
    assert rows["x.dcm"]["reason"].startswith("x.dcm: ") and rows["x.dcm"]["image_id"] == ""
    assert rows["photo.png"]["status"] == "ok" and rows["photo.png"]["modality"] == "PNG"
    assert rows["tiny.png"]["reason"].startswith("too small: 8x8")
    assert rows["flat.png"]["reason"].startswith("constant image")

    np.testing.assert_array_equal(read_tiff(frames / "good_f000.tif"), physical.astype(np.float32))
    np.testing.assert_array_equal(read_tiff(frames / "photo_f000.tif"), luma.astype(np.float32))
    ok = set(index.loc[index["status"] == "ok", "image_id"])
    assert {p.stem for p in frames.glob("*.tif")} == ok == {"good_f000", "ct_f000", "photo_f000"}


def test_result_independent_of_manifest_order(tmp_path: Path, raw) -> None:
    raw_dir, manifest, _, _ = raw
    forward = extract_dataset(raw_dir, manifest, tmp_path / "f1", tmp_path / "i1.tsv")
    table = pd.read_csv(manifest, sep="\t", dtype=str, keep_default_na=False).iloc[::-1]
    backward = extract_dataset(raw_dir, table, tmp_path / "f2", tmp_path / "i2.tsv")
    pd.testing.assert_frame_equal(forward, backward)
    assert (tmp_path / "i1.tsv").read_text() == (tmp_path / "i2.tsv").read_text()


def test_modality_filter_and_subject_hint(tmp_path: Path, raw) -> None:
    raw_dir, manifest, _, _ = raw
    table = pd.read_csv(manifest, sep="\t", dtype=str, keep_default_na=False)
    table.loc[table["path"] == "photo.png", "subject"] = "holiday"
    index = extract_dataset(raw_dir, table, tmp_path / "f", tmp_path / "i.tsv", modalities=["MR"])
    rows = by_path(index)
    assert rows["ct.dcm"]["status"] == "skipped" and rows["ct.dcm"]["reason"] == "modality CT not in ['MR']"
    assert rows["photo.png"]["status"] == "ok" and rows["photo.png"]["subject_id"] == "holiday"


def test_image_ids_unique_and_safe() -> None:
    bases = image_bases(["a/1.dcm", "b/1.dcm", "x y.png", "x_y.jpg", "m13.fits.gz", "z.dcm"])
    assert len(set(bases.values())) == 6
    assert bases["m13.fits.gz"] == "m13" and bases["z.dcm"] == "z" and bases["a/1.dcm"] == "a_1"
    assert all(c.isalnum() or c in "_-" for b in bases.values() for c in b)


def test_bad_file_never_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw) -> None:
    import scisr.extract as extract

    raw_dir, manifest, _, _ = raw
    real = extract.read_frames

    def flaky(path, **kwargs):
        if Path(path).name == "photo.png":
            raise RuntimeError("reader bug")
        return real(path, **kwargs)

    monkeypatch.setattr(extract, "read_frames", flaky)
    rows = by_path(extract_dataset(raw_dir, manifest, tmp_path / "f", tmp_path / "i.tsv"))
    assert rows["photo.png"]["reason"] == "photo.png: unexpected RuntimeError: reader bug"
    assert rows["good.dcm"]["status"] == "ok"


def test_builtin_mri_set(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    fetch({"kind": "builtin", "set": "mri"}, out, out / "MANIFEST.tsv")
    index = extract_dataset(out, out / "MANIFEST.tsv", tmp_path / "frames", tmp_path / "index.tsv")
    ok = index[index["status"] == "ok"]
    rows = by_path(index[index["frame"] <= 0])

    mr_small = index[index["source_path"].str.startswith("MR_small")]
    assert list(mr_small.loc[mr_small["status"] == "ok", "image_id"]) == ["MR_small_f000"]
    copies = mr_small[(mr_small["status"] == "skipped") & (mr_small["source_path"] != "MR_small_padded.dcm")]
    assert copies["reason"].str.startswith("duplicate of MR_small_f000").all() and len(copies) == 6
    assert "128 bytes more than Rows 64 x Columns 64" in rows["MR_small_padded.dcm"]["reason"]
    assert len(mr_small) == 8
    assert "too short: 8130 of 8192 bytes" in rows["MR_truncated.dcm"]["reason"]

    overlay, siemens = rows["examples_overlay.dcm"], rows["MR-SIEMENS-DICOM-WithOverlays.dcm"]
    assert overlay["status"] == siemens["status"] == "ok"
    assert (overlay["rows"], overlay["cols"], siemens["rows"], siemens["cols"]) == (300, 484, 484, 484)
    assert overlay["subject_id"] == siemens["subject_id"] == "021234567"

    mr2 = index[index["source_path"].str.startswith("MR2_")]
    assert len(mr2[mr2["status"] == "ok"]) == 1
    assert mr2.loc[mr2["status"] == "ok", "source_path"].item() in {"MR2_UNCR.dcm", "MR2_J2KR.dcm"}
    for lossy in ("MR2_UNCI.dcm", "MR2_J2KI.dcm"):
        assert rows[lossy]["reason"].startswith("duplicate of MR2_") and "lossy" in rows[lossy]["reason"]

    emri = index[index["source_path"].str.startswith("emri_small")]
    emri_ok = emri[emri["status"] == "ok"]
    assert len(emri_ok) == 10 and set(emri_ok["source_path"]) == {"emri_small.dcm"}
    assert list(emri_ok["frame"]) == list(range(10))
    short = rows["emri_small_jpeg_2k_lossless_too_short.dcm"]
    assert short["status"] == "skipped" and short["frame"] == -1
    assert (emri.loc[emri["status"] == "skipped", "reason"].str.len() > 0).all()

    assert len(ok) == 14
    assert {p.stem for p in (tmp_path / "frames").glob("*.tif")} == set(ok["image_id"])
    assert read_tiff(tmp_path / "frames" / "MR_small_f000.tif").max() == 2145.0
