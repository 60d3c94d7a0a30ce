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

from scisr.deid import reidentify
from scisr.extract import FrameRules, extract_dataset, scrub
from scisr.index import INDEX_COLUMNS
from scisr.io.files import read_tiff
from scisr.sources import fetch
from scisr.sources.manifest import Entry, build_manifest, write_manifest

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
RNG = np.random.default_rng(7)
SECRET = bytes(range(32))
BOTH = {"pixel_data": ["ORIGINAL", "DERIVED"]}  # pydicom's test files are DERIVED


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


def run(raw_dir, manifest, frames_dir, index_path, **kwargs) -> pd.DataFrame:
    """extract_dataset with the test secret; the index re-identified through its key map
    (original subject, series and source path); pydicom's DERIVED test files kept unless `frames` is given."""
    key_map = Path(index_path).with_name(Path(index_path).stem + "_keys.tsv")
    kwargs = {"frames": BOTH, **kwargs}
    index = extract_dataset(raw_dir, manifest, frames_dir, index_path, secret=SECRET, key_map=key_map, **kwargs)
    return reidentify(index, key_map)


def by_path(index: pd.DataFrame) -> dict[str, dict]:
    return {row["source_path"]: row for row in index.to_dict("records")}


def test_small_folder(tmp_path: Path, raw) -> None:
    raw_dir, manifest, physical, luma = raw
    frames, index_path = tmp_path / "frames", tmp_path / "index.tsv"
    frames.mkdir()
    (frames / "stale_f000.tif").write_bytes(b"old")
    index = run(raw_dir, manifest, frames, index_path, dataset="mri")
    assert list(index.columns) == INDEX_COLUMNS
    assert list(pd.read_csv(index_path, sep="\t").columns) == INDEX_COLUMNS
    rows = by_path(index)

    good = rows["good.dcm"]["image_id"]
    assert rows["good.dcm"]["status"] == "ok" and good.startswith("mri-") and "good" not in good
    assert rows["good.dcm"]["subject_id"] == "4MR1" and rows["good.dcm"]["original_dtype"] == "int16"
    assert rows["good.dcm"]["subject_rule"] == "patient" and rows["photo.png"]["subject_rule"] == "file"
    assert (rows["good.dcm"]["rows"], rows["good.dcm"]["cols"], rows["good.dcm"]["frame"]) == (64, 64, 0)
    assert rows["a_lossy.dcm"]["reason"] == f"duplicate of {good} (same SOP instance, lossy copy)"
    assert rows["good_rle.dcm"]["reason"] == f"duplicate of {good} (same SOP instance, another encoding)"
    assert rows["renamed_bigendian.dcm"]["reason"] == f"duplicate of {good} (identical pixels)"
    assert rows["ct.dcm"]["status"] == "ok"
    assert rows["x.dcm"]["status"] == "skipped" and rows["x.dcm"]["frame"] == -1
    # the reader's message names the file; the index names its pseudonym instead
    assert rows["x.dcm"]["reason"].startswith("x.dcm: ") and rows["x.dcm"]["image_id"] == ""
    assert "x.dcm" not in index_path.read_text() and "good" not in index_path.read_text()
    assert rows["photo.png"]["status"] == "ok" and rows["photo.png"]["modality"] == "PNG"
    assert rows["tiny.png"]["reason"].startswith("too small: 8x8")
    assert rows["flat.png"]["reason"].startswith("constant image")

    np.testing.assert_array_equal(read_tiff(frames / f"{good}.tif"), physical.astype(np.float32))
    photo = rows["photo.png"]["image_id"]
    np.testing.assert_array_equal(read_tiff(frames / f"{photo}.tif"), luma.astype(np.float32))
    ok = set(index.loc[index["status"] == "ok", "image_id"])
    assert {p.stem for p in frames.glob("*.tif")} == ok == {good, rows["ct.dcm"]["image_id"], photo}


def test_result_independent_of_manifest_order(tmp_path: Path, raw) -> None:
    raw_dir, manifest, _, _ = raw
    forward = run(raw_dir, manifest, tmp_path / "f1", tmp_path / "i1.tsv")
    table = pd.read_csv(manifest, sep="\t", dtype=str, keep_default_na=False).iloc[::-1]
    backward = run(raw_dir, table, tmp_path / "f2", tmp_path / "i2.tsv")
    pd.testing.assert_frame_equal(forward, backward)
    assert (tmp_path / "i1.tsv").read_text() == (tmp_path / "i2.tsv").read_text()


def test_modality_filter_and_subject_hint(tmp_path: Path, raw) -> None:
    raw_dir, manifest, _, _ = raw
    table = pd.read_csv(manifest, sep="\t", dtype=str, keep_default_na=False)
    table.loc[table["path"] == "photo.png", "subject"] = "holiday"
    index = run(raw_dir, table, tmp_path / "f", tmp_path / "i.tsv", modalities=["MR"])
    rows = by_path(index)
    assert rows["ct.dcm"]["status"] == "skipped" and rows["ct.dcm"]["reason"] == "modality CT not in ['MR']"
    assert rows["photo.png"]["status"] == "ok" and rows["photo.png"]["subject_id"] == "holiday"
    assert rows["photo.png"]["subject_rule"] == "source"


def test_image_ids_are_pseudonyms_stable_per_secret(tmp_path: Path, raw) -> None:
    raw_dir, manifest, _, _ = raw
    one = run(raw_dir, manifest, tmp_path / "f1", tmp_path / "i1.tsv", dataset="mri")
    ids = one.loc[one["image_id"] != "", "image_id"]
    assert ids.is_unique and ids.str.fullmatch(r"mri-[0-9a-f]{10}-[0-9]{3}").all()
    other = extract_dataset(raw_dir, manifest, tmp_path / "f2", tmp_path / "i2.tsv", secret=bytes(32), frames=BOTH)
    assert not set(ids) & set(other["image_id"])  # another secret, other pseudonyms
    written = pd.read_csv(tmp_path / "i1.tsv", sep="\t", dtype=str, keep_default_na=False)
    assert not (set(written["subject_id"]) & set(other["subject_id"])) - {""}


def test_scrub_replaces_every_path_part() -> None:
    text = "DOE^JOHN_19650203/IM0001.dcm: IM0001.dcm is bad, see DOE^JOHN_19650203; xIM0001.dcm stays"
    expected = "src-1: src-1 is bad, see src-1; xIM0001.dcm stays"
    assert scrub(text, "DOE^JOHN_19650203/IM0001.dcm", "src-1") == expected


def test_frame_rules_default_to_the_schema(root: Path) -> None:
    import yaml

    schema = yaml.safe_load((root / "config" / "schema.yaml").read_text())
    frames = schema["$defs"]["dataset"]["properties"]["frames"]["properties"]
    assert FrameRules() == FrameRules.from_config({k: v["default"] for k, v in frames.items()})


def test_philips_field_map_frames_are_skipped(tmp_path: Path, shared_data: Path) -> None:
    """32 magnitude frames kept, the 32 field-map frames (Hz, REAL) skipped with the reason."""
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    shutil.copy(shared_data / "dicom" / "enhanced" / "philips_IM_0027_fMAP.dcm", raw_dir / "fmap.dcm")
    table = build_manifest(raw_dir, [Entry(path="fmap.dcm", source="test")])
    index = run(raw_dir, table, tmp_path / "f", tmp_path / "i.tsv", frames=None)
    ok, skipped = index[index["status"] == "ok"], index[index["status"] == "skipped"]
    assert len(ok) == len(skipped) == 32
    assert set(ok["frame"]) == set(range(32)) and set(skipped["frame"]) == set(range(32, 64))
    assert (ok["image_type"] == "ORIGINAL\\PRIMARY\\T1\\M/MAGNITUDE").all()
    assert skipped["reason"].str.contains("FIELD_MAP is in frames.exclude").all()
    # the field map is refused by its complex component too, when FIELD_MAP itself is allowed
    again = run(raw_dir, table, tmp_path / "g", tmp_path / "j.tsv", frames={"exclude": []})
    refused = again[again["status"] == "skipped"]
    assert len(refused) == 32 and refused["reason"].str.contains("complex component REAL").all()
    # slice positions: 32 distinct planes 4 mm apart, the same for both kinds of frame
    positions = ok.sort_values("frame")["slice_position"].astype(float).to_numpy()
    np.testing.assert_allclose(np.diff(positions), 4.0, atol=0.01)


def test_derived_and_localizer_frames_skipped_by_default(tmp_path: Path) -> None:
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    base = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    kinds = {
        "orig.dcm": ["ORIGINAL", "PRIMARY", "M", "ND"],
        "phase.dcm": ["ORIGINAL", "PRIMARY", "P", "ND"],
        "loc.dcm": ["ORIGINAL", "PRIMARY", "LOCALIZER"],
        "adc.dcm": ["DERIVED", "PRIMARY", "DIFFUSION", "ADC"],
    }
    for k, (name, image_type) in enumerate(kinds.items()):
        base.ImageType, base.SOPInstanceUID = image_type, generate_uid()
        base.PixelData = (base.pixel_array + k).astype(np.int16).tobytes()
        base.save_as(raw_dir / name)
    table = build_manifest(raw_dir, [Entry(path=n, source="test") for n in kinds])
    rows = by_path(run(raw_dir, table, tmp_path / "f", tmp_path / "i.tsv", frames=None))
    assert rows["orig.dcm"]["status"] == "ok"
    assert "complex component PHASE not in frames.components" in rows["phase.dcm"]["reason"]
    assert "LOCALIZER is in frames.exclude" in rows["loc.dcm"]["reason"]
    assert "DERIVED not in frames.pixel_data" in rows["adc.dcm"]["reason"]


def test_bad_file_never_stops_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw) -> None:
    import scisr.extract as extract

    raw_dir, manifest, _, _ = raw
    real = extract.read_frames

    def flaky(path, **kwargs):
        if Path(path).name == "photo.png":
            raise RuntimeError("reader bug")
        return real(path, **kwargs)

    monkeypatch.setattr(extract, "read_frames", flaky)
    rows = by_path(run(raw_dir, manifest, tmp_path / "f", tmp_path / "i.tsv"))
    assert rows["photo.png"]["reason"] == "photo.png: unexpected RuntimeError: reader bug"
    assert rows["good.dcm"]["status"] == "ok"


def test_builtin_mri_set(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    fetch({"kind": "builtin", "set": "mri"}, out, out / "MANIFEST.tsv")
    index = run(out, out / "MANIFEST.tsv", tmp_path / "frames", tmp_path / "index.tsv")
    ok = index[index["status"] == "ok"]
    rows = by_path(index[index["frame"] <= 0])

    mr_small = index[index["source_path"].str.startswith("MR_small")]
    kept = mr_small.loc[mr_small["status"] == "ok", "image_id"]
    assert len(kept) == 1 and rows["MR_small.dcm"]["image_id"] == kept.item()
    copies = mr_small[(mr_small["status"] == "skipped") & (mr_small["source_path"] != "MR_small_padded.dcm")]
    assert copies["reason"].str.startswith(f"duplicate of {kept.item()}").all() and len(copies) == 6
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
        kept = mr2.loc[mr2["status"] == "ok", "image_id"].item()
        assert rows[lossy]["reason"].startswith(f"duplicate of {kept}") and "lossy" in rows[lossy]["reason"]

    emri = index[index["source_path"].str.startswith("emri_small")]
    emri_ok = emri[emri["status"] == "ok"]
    assert len(emri_ok) == 10 and set(emri_ok["source_path"]) == {"emri_small.dcm"}
    assert list(emri_ok["frame"]) == list(range(10))
    short = rows["emri_small_jpeg_2k_lossless_too_short.dcm"]
    assert short["status"] == "skipped" and short["frame"] == -1
    assert (emri.loc[emri["status"] == "skipped", "reason"].str.len() > 0).all()

    assert len(ok) == 14
    assert {p.stem for p in (tmp_path / "frames").glob("*.tif")} == set(ok["image_id"])
    assert read_tiff(tmp_path / "frames" / f"{rows['MR_small.dcm']['image_id']}.tif").max() == 2145.0


@pytest.mark.parametrize("units", [2, 3])
def test_work_units_give_the_single_job_result(tmp_path: Path, raw, units: int) -> None:
    """Extract split into work units (some in subfolders, so whole folders go to one unit) and gathered equals
    extract in one job, byte for byte: index, key map, frames, and which copy of a duplicate or conflict is kept."""
    from scisr.extract import extract_unit, unit_members
    from scisr.extract_gather import gather_units

    raw_dir, _, _, _ = raw
    ds = pydicom.dcmread(raw_dir / "good.dcm")
    for folder in ("s1", "s2", "s3"):
        (raw_dir / folder).mkdir()
    shutil.move(raw_dir / "good_rle.dcm", raw_dir / "s1" / "good_rle.dcm")
    shutil.move(raw_dir / "photo.png", raw_dir / "s2" / "photo.png")
    pixels = ds.pixel_array.copy()
    pixels[:8] += 100  # same SOP instance, other pixels, lossless: a conflict with good.dcm's copies
    ds.PixelData = pixels.tobytes()
    ds.save_as(raw_dir / "s3" / "garbled.dcm")
    names = sorted(str(p.relative_to(raw_dir)) for p in raw_dir.rglob("*") if p.is_file())
    manifest = tmp_path / "MANIFEST2.tsv"
    write_manifest(build_manifest(raw_dir, [Entry(path=n, source=f"t:{n}", subject="") for n in names]), manifest)
    assert len(set(unit_members(names, units).values())) > 1  # the files really are spread

    one = tmp_path / "one"
    extract_dataset(
        raw_dir,
        manifest,
        one / "frames",
        one / "index.tsv",
        secret=SECRET,
        key_map=one / "keys.tsv",
        dataset="mri",
        frames=BOTH,
    )
    many = tmp_path / "many"
    parts, fragments = [], []
    for unit in range(units, 0, -1):  # any order: the gather orders
        folder = many / f"unit{unit}"
        extract_unit(
            raw_dir,
            manifest,
            folder / "frames",
            folder / "candidates.tsv",
            secret=SECRET,
            key_map=folder / "keys.tsv",
            unit=unit,
            units=units,
            frames=BOTH,
        )
        parts.append((folder / "candidates.tsv", folder / "frames"))
        fragments.append(folder / "keys.tsv")
    index = gather_units(
        parts, many / "frames", many / "index.tsv", dataset="mri", key_maps=fragments, key_map=many / "keys.tsv"
    )

    assert (many / "index.tsv").read_bytes() == (one / "index.tsv").read_bytes()
    assert (many / "keys.tsv").read_bytes() == (one / "keys.tsv").read_bytes()
    kinds = set(index["reason"].str.split(":").str[0])
    assert "conflict" in kinds and index["reason"].str.contains("duplicate of").any()
    ok = sorted(p.name for p in (one / "frames").iterdir())
    assert ok == sorted(p.name for p in (many / "frames").iterdir()) and len(ok) >= 2
    for name in ok:
        assert (many / "frames" / name).read_bytes() == (one / "frames" / name).read_bytes()
