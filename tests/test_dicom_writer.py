"""DICOM output of `scisr upscale`: geometry, UIDs, derived-image attributes, multi-frame, anonymization."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pydicom
import pytest
from upscale_helpers import bicubic, model_folder

from scisr.cli import main
from scisr.io.dicom_writer import storage
from scisr.io.readers import read_frames

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    return model_folder(tmp_path_factory.mktemp("models") / "identity")


def upscale(model, out, *inputs, extra=()) -> int:
    return main(["upscale", "--quiet", "--model", str(model), "--out", str(out), *map(str, inputs), *extra])


def frame_geometry(ds, frame: int | None):
    """(position, orientation, spacing) of a classic image or of one frame of an enhanced one."""
    if frame is None:
        return ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing
    group, shared = ds.PerFrameFunctionalGroupsSequence[frame], ds.SharedFunctionalGroupsSequence[0]

    def find(seq, key):
        for item in (group, shared):
            if seq in item and key in item[seq][0]:
                return item[seq][0][key].value

    return (
        find("PlanePositionSequence", "ImagePositionPatient"),
        find("PlaneOrientationSequence", "ImageOrientationPatient"),
        find("PixelMeasuresSequence", "PixelSpacing"),
    )


def centres(ds, frame: int | None = None) -> np.ndarray:
    """Patient-space positions (rows, cols, 3) of every pixel centre of a classic or enhanced image."""
    position, orientation, spacing = frame_geometry(ds, frame)
    p, o, s = np.array(position, float), np.array(orientation, float), [float(v) for v in spacing]
    r, c = np.mgrid[0 : ds.Rows, 0 : ds.Columns]
    return p + c[..., None] * s[1] * o[:3] + r[..., None] * s[0] * o[3:]


def check_geometry(src, dst, scale=4, frame=None) -> None:
    before, after = centres(src, frame), centres(dst, frame)
    assert after.shape[:2] == (before.shape[0] * scale, before.shape[1] * scale)
    # old pixel (r, c) is the centre of new block (r*s .. r*s+s-1): the mean of its s x s new centres
    blocks = after.reshape(before.shape[0], scale, before.shape[1], scale, 3).mean(axis=(1, 3))
    old_spacing = [float(v) for v in frame_geometry(src, frame)[2]]
    new_spacing = [float(v) for v in frame_geometry(dst, frame)[2]]
    assert new_spacing == pytest.approx([v / scale for v in old_spacing])
    assert list(frame_geometry(dst, frame)[1]) == list(frame_geometry(src, frame)[1])
    assert np.abs(blocks - before).max() < 0.01 * min(new_spacing)


def test_storage_fits_without_clipping():
    assert storage(-1024.0, 3071.0, 1.0, -1024.0) == (1.0, -1024.0, False, 12)
    slope, _intercept, signed, bits = storage(-5.0, 200000.0, 1.0, 0.0)  # wider than 16 bits at step 1
    assert slope == pytest.approx(200005 / 65535) and not signed and bits == 16
    assert storage(-300.0, 200.0, 1.0, 0.0)[2]  # negatives at the source intercept: signed


def test_single_frame_geometry_units_and_uids(identity, tmp_path):
    source = PYDICOM_FILES / "MR_small.dcm"
    assert upscale(identity, tmp_path, source) == 0
    src, dst = pydicom.dcmread(source), pydicom.dcmread(tmp_path / "MR_small.dcm")
    assert (dst.Rows, dst.Columns) == (256, 256)
    assert [float(v) for v in dst.PixelSpacing] == pytest.approx([float(v) / 4 for v in src.PixelSpacing])
    assert list(dst.ImageOrientationPatient) == list(src.ImageOrientationPatient)
    check_geometry(src, dst)
    assert dst.SeriesInstanceUID != src.SeriesInstanceUID and dst.SOPInstanceUID != src.SOPInstanceUID
    assert dst.file_meta.MediaStorageSOPInstanceUID == dst.SOPInstanceUID
    assert dst.StudyInstanceUID == src.StudyInstanceUID and dst.PatientID == src.PatientID
    assert list(dst.ImageType)[:2] == ["DERIVED", "SECONDARY"] and "SciSR" in dst.DerivationDescription
    assert dst.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    # physical units: the identity model gives bicubic of the source's rescaled values, to a storage step
    (before,), (after,) = read_frames(source), read_frames(tmp_path / "MR_small.dcm")
    step = float(dst.get("RescaleSlope", 1))
    assert np.abs(after.image - bicubic(before.image)).max() <= step / 2 + 1e-3 * np.ptp(before.image)


def test_series_folder_shares_one_new_series(identity, tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for i, name in enumerate(["MR_small.dcm", "MR_small_implicit.dcm"]):
        ds = pydicom.dcmread(PYDICOM_FILES / name)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = i + 1
        ds.save_as(folder / f"{i}.dcm")
    assert upscale(identity, tmp_path / "out", folder) == 0
    outs = [pydicom.dcmread(tmp_path / "out" / "series" / f"{i}.dcm") for i in range(2)]
    src = pydicom.dcmread(folder / "0.dcm")
    assert outs[0].SeriesInstanceUID == outs[1].SeriesInstanceUID != src.SeriesInstanceUID
    assert outs[0].SOPInstanceUID != outs[1].SOPInstanceUID


def test_window_and_large_range_fit(identity, tmp_path):
    ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    ds.WindowCenter, ds.WindowWidth = 600, 1200
    ds.RescaleSlope, ds.RescaleIntercept = 3, -2000  # values up to ~ 12000: fits 16 bits at step 3
    ds.save_as(tmp_path / "w.dcm")
    assert upscale(identity, tmp_path / "o", tmp_path / "w.dcm") == 0
    dst = pydicom.dcmread(tmp_path / "o" / "w.dcm")
    assert float(dst.WindowCenter) == 600 and float(dst.WindowWidth) == 1200
    (before,), (after,) = read_frames(tmp_path / "w.dcm"), read_frames(tmp_path / "o" / "w.dcm")
    expected = bicubic(before.image)
    assert (
        after.image.min() <= expected.min() + 2 and after.image.max() >= expected.max() - 2
    )  # overshoot kept, not clipped


def test_anonymize_removes_identity(identity, tmp_path):
    source = PYDICOM_FILES / "MR_small.dcm"
    ds = pydicom.dcmread(source)
    ds.PatientBirthDate, ds.InstitutionName, ds.OperatorsName = "19700101", "General Hospital", "Smith^J"
    ds.add_new(0x00291010, "LO", "private vendor data")
    ds.save_as(tmp_path / "id.dcm")
    assert upscale(identity, tmp_path / "o", tmp_path / "id.dcm", extra=["--anonymize"]) == 0
    dst = pydicom.dcmread(tmp_path / "o" / "id.dcm")
    text = str(dst)
    for value in (
        str(ds.PatientName),
        ds.PatientID,
        "19700101",
        "General Hospital",
        "Smith",
        "private vendor",
        ds.StudyInstanceUID,
        ds.SOPInstanceUID,
        ds.FrameOfReferenceUID if "FrameOfReferenceUID" in ds else ds.PatientID,
    ):
        assert value not in text, value
    assert dst.PatientIdentityRemoved == "YES" and "PatientName" in dst and not dst.PatientName
    assert dst.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    check_geometry(ds, dst)


def test_enhanced_multiframe_stays_multiframe(identity, tmp_path, shared_data):
    source = shared_data / "dicom" / "enhanced" / "siemens_xa10_6_1.dcm"
    assert upscale(identity, tmp_path, source) == 0
    src, dst = pydicom.dcmread(source), pydicom.dcmread(tmp_path / source.name)
    assert int(dst.NumberOfFrames) == int(src.NumberOfFrames) > 1
    assert dst.SOPClassUID == src.SOPClassUID and (dst.Rows, dst.Columns) == (src.Rows * 4, src.Columns * 4)
    for frame in range(int(src.NumberOfFrames)):
        check_geometry(src, dst, frame=frame)
    before, after = read_frames(source), read_frames(tmp_path / source.name)
    assert len(after) == len(before)
    for a, b in zip(after, before):
        assert np.abs(a.image - bicubic(b.image)).max() <= 1 + 1e-3 * np.ptp(b.image)


def test_classic_multiframe(identity, tmp_path):
    spec = importlib.util.find_spec("data_store")
    if spec is None:
        pytest.skip("pydicom-data (module data_store) is not installed")
    source = Path(next(iter(spec.submodule_search_locations))) / "data" / "emri_small.dcm"
    assert upscale(identity, tmp_path, source) == 0
    before, after = read_frames(source), read_frames(tmp_path / "emri_small.dcm")
    assert len(after) == len(before) == 10 and after[0].image.shape == (256, 256)
    assert after[0].series_id != before[0].series_id
