"""DICOM reader: physical values, every encoding identical, broken files refused."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import MRImageStorage, generate_uid

from scisr.io import ReadError
from scisr.io.readers import read_frames, sniff

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
MR_SMALL = [
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_implicit.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
]
EMRI = [
    "emri_small.dcm",
    "emri_small_RLE.dcm",
    "emri_small_big_endian.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
]


def data_store_dir() -> Path:
    spec = importlib.util.find_spec("data_store")
    if spec is None:
        pytest.skip("pydicom-data (module data_store) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def write_dicom(
    path: Path, stored: np.ndarray, *, photometric: str = "MONOCHROME2", bits: int | None = None, **attrs
) -> Path:
    """A minimal MR DICOM file holding `stored` (2-D, 3-D frames, or (r, c, 3) RGB)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "MR"
    ds.PatientID = "P1"
    ds.set_pixel_data(stored, photometric, bits or stored.dtype.itemsize * 8)
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_mr_small_encodings_identical() -> None:
    frames = {name: read_frames(PYDICOM_FILES / name) for name in MR_SMALL}
    reference = frames["MR_small.dcm"][0]
    assert reference.image.dtype == np.float32 and reference.image.shape == (64, 64)
    assert reference.subject_id == "4MR1" and reference.modality == "MR" and reference.original_dtype == "int16"
    for name, fr in frames.items():
        assert len(fr) == 1, name
        np.testing.assert_array_equal(fr[0].image, reference.image, err_msg=name)
        assert fr[0].instance_id == reference.instance_id
        assert not fr[0].lossy


def test_excess_pixel_bytes_refused() -> None:
    # 128 bytes past Rows x Columns: indistinguishable from Columns one too small (a sheared image)
    with pytest.raises(ReadError, match="128 bytes more than Rows 64 x Columns 64"):
        read_frames(PYDICOM_FILES / "MR_small_padded.dcm")


def test_multiframe_encodings_identical() -> None:
    folder = data_store_dir()
    reference = read_frames(folder / EMRI[0])
    assert len(reference) == 10 and [f.frame for f in reference] == list(range(10))
    header = pydicom.dcmread(folder / EMRI[0], stop_before_pixels=True)
    assert not header.PatientID and reference[0].subject_id == header.StudyInstanceUID
    for name in EMRI[1:]:
        frames = read_frames(folder / name)
        assert len(frames) == 10, name
        for a, b in zip(frames, reference):
            np.testing.assert_array_equal(a.image, b.image, err_msg=name)


def test_truncated_native_pixel_data() -> None:
    with pytest.raises(ReadError, match=r"MR_truncated\.dcm: pixel data too short: 8130 of 8192 bytes"):
        read_frames(PYDICOM_FILES / "MR_truncated.dcm")


def test_truncated_encapsulated_pixel_data() -> None:
    with pytest.raises(ReadError, match=r"emri_small_jpeg_2k_lossless_too_short.dcm: no pixel data"):
        read_frames(data_store_dir() / "emri_small_jpeg_2k_lossless_too_short.dcm")


def test_truncated_written_file(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "a.dcm", np.arange(32 * 32, dtype=np.uint16).reshape(32, 32))
    data = path.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-100])
    with pytest.raises(ReadError, match=r"cut.dcm: pixel data too short"):
        read_frames(tmp_path / "cut.dcm")


def test_rescale_slope_intercept_exact(tmp_path: Path) -> None:
    stored = np.array([[0, 1, 2, 4095]], dtype=np.uint16).repeat(4, axis=0)
    path = write_dicom(tmp_path / "ct.dcm", stored, bits=12, RescaleSlope=2.5, RescaleIntercept=-1024)
    (fr,) = read_frames(path)
    np.testing.assert_array_equal(fr.image, stored * 2.5 - 1024)
    assert fr.image[0].tolist() == [-1024.0, -1021.5, -1019.0, 9213.5]


def test_signed_pixels_keep_negative_values(tmp_path: Path) -> None:
    stored = np.array([[-2048, -1, 0, 2047]], dtype=np.int16).repeat(3, axis=0)
    (fr,) = read_frames(write_dicom(tmp_path / "s.dcm", stored, bits=12))
    np.testing.assert_array_equal(fr.image, stored.astype(np.float32))
    assert fr.original_dtype == "int16"


def test_monochrome1_inverted_in_stored_range(tmp_path: Path) -> None:
    stored = np.array([[0, 100, 4095]], dtype=np.uint16).repeat(2, axis=0)
    path = write_dicom(
        tmp_path / "m1.dcm", stored, photometric="MONOCHROME1", bits=12, RescaleSlope=2, RescaleIntercept=10
    )
    (fr,) = read_frames(path)
    np.testing.assert_array_equal(fr.image[0], [(4095 - 0) * 2 + 10, (4095 - 100) * 2 + 10, 0 * 2 + 10])


def test_monochrome1_signed(tmp_path: Path) -> None:
    stored = np.array([[-2048, 0, 2047]], dtype=np.int16)
    (fr,) = read_frames(write_dicom(tmp_path / "m1s.dcm", stored, photometric="MONOCHROME1", bits=12))
    np.testing.assert_array_equal(fr.image[0], [2047, -1, -2048])


def _rescale_group(slope: float, intercept: float) -> Dataset:
    item = Dataset()
    item.RescaleSlope, item.RescaleIntercept, item.RescaleType = slope, intercept, "US"
    group = Dataset()
    group.PixelValueTransformationSequence = Sequence([item])
    return group


def test_enhanced_per_frame_rescale(tmp_path: Path) -> None:
    stored = np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16)
    per_frame = [_rescale_group(2.0, 5.0), Dataset(), _rescale_group(0.5, -100.0)]
    path = write_dicom(
        tmp_path / "enh.dcm",
        stored,
        PerFrameFunctionalGroupsSequence=Sequence(per_frame),
        SharedFunctionalGroupsSequence=Sequence([_rescale_group(3.0, 1.0)]),
        RescaleSlope=7,  # the top level loses against functional groups
    )
    frames = read_frames(path)
    assert [f.frame for f in frames] == [0, 1, 2]
    np.testing.assert_array_equal(frames[0].image, stored[0] * 2.0 + 5.0)
    np.testing.assert_array_equal(frames[1].image, stored[1] * 3.0 + 1.0)  # shared fallback
    np.testing.assert_array_equal(frames[2].image, stored[2] * 0.5 - 100.0)


def test_top_level_rescale_when_no_functional_groups(tmp_path: Path) -> None:
    stored = np.arange(2 * 16 * 16, dtype=np.uint16).reshape(2, 16, 16)
    frames = read_frames(write_dicom(tmp_path / "mf.dcm", stored, RescaleSlope=4, RescaleIntercept=-3))
    for fr, plane in zip(frames, stored):
        np.testing.assert_array_equal(fr.image, plane * 4.0 - 3.0)


def test_rgb_dicom_becomes_bt601_luma(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    (fr,) = read_frames(write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB", bits=8))
    expected = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)
    np.testing.assert_array_equal(fr.image, expected)


def test_palette_colour_through_its_lookup_table() -> None:
    from pydicom.pixels import apply_color_lut

    ds = pydicom.dcmread(PYDICOM_FILES / "examples_palette.dcm")
    rgb = apply_color_lut(ds.pixel_array, ds).astype(np.float64)
    (fr,) = read_frames(PYDICOM_FILES / "examples_palette.dcm")
    expected = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)
    np.testing.assert_array_equal(fr.image, expected)


def test_subject_fallbacks(tmp_path: Path) -> None:
    stored = np.zeros((16, 16), dtype=np.uint16)
    path = write_dicom(tmp_path / "a.dcm", stored, PatientID="")
    (fr,) = read_frames(path)
    assert fr.subject_id == pydicom.dcmread(path).StudyInstanceUID
    ds = pydicom.dcmread(path)
    del ds.StudyInstanceUID, ds.SeriesInstanceUID
    ds.save_as(tmp_path / "b.dcm")
    (fr,) = read_frames(tmp_path / "b.dcm")
    assert fr.subject_id.startswith("file-") and fr.series_id == fr.subject_id


def test_lossy_flag(tmp_path: Path) -> None:
    stored = np.ones((16, 16), dtype=np.uint16)
    (fr,) = read_frames(write_dicom(tmp_path / "l.dcm", stored, LossyImageCompression="01"))
    assert fr.lossy
    assert read_frames(data_store_dir() / "MR2_J2KI.dcm")[0].lossy
    assert not read_frames(data_store_dir() / "MR2_J2KR.dcm")[0].lossy


def test_garbage_and_missing_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = tmp_path / "x.dcm"
    garbage.write_bytes(b"not a dicom file at all" * 10)
    assert sniff(garbage) == "dicom-nopreamble"
    with pytest.raises(ReadError, match=r"^x\.dcm: "):
        read_frames(garbage)

    def no_plugin(self):
        raise RuntimeError("Unable to decompress pixel data because all plugins are missing dependencies")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_plugin))
    with pytest.raises(ReadError, match=r"MR_small_jpeg_ls_lossless.dcm: JPEG-LS .* needs pylibjpeg-libjpeg"):
        read_frames(PYDICOM_FILES / "MR_small_jpeg_ls_lossless.dcm")


# ../shared/data: real files from other sources (skipped where absent)


def test_shared_transfer_syntaxes_identical(shared_data: Path) -> None:
    paths = [shared_data / "dicom" / "transfer-syntaxes" / f"{i}.dcm" for i in range(1, 10)]
    reference = read_frames(paths[0])[0].image
    assert reference.shape == (384, 384) and reference.max() > 255
    for path in paths[1:]:
        (fr,) = read_frames(path)
        np.testing.assert_array_equal(fr.image, reference, err_msg=path.name)


def test_shared_enhanced_per_frame_rescale(shared_data: Path) -> None:
    for path in sorted((shared_data / "dicom" / "enhanced").glob("*.dcm")):
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
        frames = read_frames(path)
        assert len(frames) == len(stored) == int(ds.NumberOfFrames)
        for i, fr in enumerate(frames):
            t = ds.PerFrameFunctionalGroupsSequence[i].PixelValueTransformationSequence[0]
            expected = stored[i] * float(t.RescaleSlope) + float(t.RescaleIntercept)
            np.testing.assert_allclose(
                fr.image, expected.astype(np.float32), rtol=0, atol=0, err_msg=f"{path.name} {i}"
            )
    philips = read_frames(shared_data / "dicom" / "enhanced" / "philips_IM_0027_fMAP.dcm")
    assert len({f.meta["rescale"] for f in philips}) == 2  # magnitude and field-map frames differ


def test_shared_single_files(shared_data: Path) -> None:
    single = shared_data / "dicom" / "single"
    with pytest.raises(ReadError, match=r"emri_small_jpeg_2k_lossless_too_short.dcm"):
        read_frames(single / "emri_small_jpeg_2k_lossless_too_short.dcm")
    unc, j2k = read_frames(single / "MR2_UNCR.dcm")[0], read_frames(single / "MR2_J2KR.dcm")[0]
    assert unc.image.shape == (1024, 1024)
    np.testing.assert_array_equal(unc.image, j2k.image)
    assert len(read_frames(single / "emri_small_jpeg_ls_lossless.dcm")) == 10
    assert read_frames(single / "JPGLosslessP14SV1_1s_1f_8b.dcm")[0].original_dtype == "uint8"


def test_frame_type_and_slice_position_per_frame(shared_data: Path) -> None:
    """Enhanced MR: per-frame FrameType / ComplexImageComponent and plane positions along the normal."""
    frames = read_frames(shared_data / "dicom" / "enhanced" / "philips_IM_0027_fMAP.dcm")
    assert [f.image_type[-1] for f in frames] == ["M"] * 32 + ["FIELD_MAP"] * 32
    assert [f.complex_component for f in frames] == ["MAGNITUDE"] * 32 + ["REAL"] * 32
    positions = [f.slice_position for f in frames]
    assert positions[:32] == positions[32:] and len(set(positions)) == 32
    assert frames[0].subject_rule == "patient"


def test_classic_image_type_component_and_position(tmp_path: Path) -> None:
    ds = pydicom.dcmread(Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "P", "ND"]  # Siemens' phase image code
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal: the normal is -x
    ds.ImagePositionPatient = [12.5, -3, 40]
    ds.save_as(tmp_path / "phase.dcm")
    frame = read_frames(tmp_path / "phase.dcm")[0]
    assert frame.image_type == ("ORIGINAL", "PRIMARY", "P", "ND") and frame.complex_component == "PHASE"
    assert frame.slice_position == pytest.approx(-12.5)
    del ds.ImagePositionPatient  # no geometry: no position (frames may be time points)
    del ds.PatientID
    ds.save_as(tmp_path / "nogeo.dcm")
    frame = read_frames(tmp_path / "nogeo.dcm")[0]
    assert frame.slice_position is None and frame.subject_rule == "study"
