"""FITS reader: scaled integers in physical units, cubes as frames, NaN kept."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from scisr.io import ReadError
from scisr.io.readers import read_frames, sniff


def astropy_file(rel: str) -> Path:
    path = Path(next(iter(importlib.util.find_spec("astropy").submodule_search_locations))) / rel
    if not path.is_file():
        pytest.skip(f"{rel} is not in this astropy")
    return path


def test_bscale_bzero_applied(tmp_path: Path) -> None:
    stored = np.array([[-32768, -1, 0, 1, 32767]] * 4, dtype=np.int16)
    physical = stored * 0.5 + 100.0
    hdu = fits.PrimaryHDU(physical.copy())  # scale() works in place
    hdu.scale("int16", bscale=0.5, bzero=100.0)
    hdu.header["OBJECT"] = "NGC 1"
    hdu.writeto(tmp_path / "scaled.fits")
    (fr,) = read_frames(tmp_path / "scaled.fits")
    assert fr.image.dtype == np.float32 and fr.original_dtype == "int16"
    np.testing.assert_array_equal(fr.image, physical)
    assert fr.subject_id == "NGC 1" and fr.series_id == "scaled" and fr.modality == "FITS"


def test_unsigned_16_bit(tmp_path: Path) -> None:
    data = np.array([[0, 1, 40000, 65535]] * 3, dtype=np.uint16)
    fits.PrimaryHDU(data).writeto(tmp_path / "u16.fits")
    (fr,) = read_frames(tmp_path / "u16.fits")
    assert fr.original_dtype == "uint16"
    np.testing.assert_array_equal(fr.image, data)
    assert fr.subject_id == "u16"  # no OBJECT: the file stem


def test_cube_gives_one_frame_per_plane(tmp_path: Path) -> None:
    cube = np.arange(3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7)
    fits.PrimaryHDU(cube).writeto(tmp_path / "cube.fits")
    frames = read_frames(tmp_path / "cube.fits")
    assert [f.frame for f in frames] == [0, 1, 2]
    for fr, plane in zip(frames, cube):
        np.testing.assert_array_equal(fr.image, plane)
    assert frames[0].original_dtype == "float32"


def test_nan_and_inf_become_nan(tmp_path: Path) -> None:
    data = np.array([[1.0, np.nan, np.inf, -np.inf]] * 2, dtype=np.float64)
    fits.PrimaryHDU(data).writeto(tmp_path / "nan.fits")
    (fr,) = read_frames(tmp_path / "nan.fits")
    assert fr.image[0, 0] == 1.0 and np.isnan(fr.image[:, 1:]).all()


def test_blank_integer_pixels_become_nan(tmp_path: Path) -> None:
    hdu = fits.PrimaryHDU(np.array([[5, -99], [7, 8]], dtype=np.int16))
    hdu.header["BLANK"] = -99
    hdu.writeto(tmp_path / "blank.fits")
    (fr,) = read_frames(tmp_path / "blank.fits")
    assert np.isnan(fr.image[0, 1]) and fr.image[1, 1] == 8


def test_first_image_extension_compressed_and_gzip(tmp_path: Path) -> None:
    data = np.arange(20 * 30, dtype=np.int32).reshape(20, 30)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data)]).writeto(tmp_path / "ext.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="RICE_1")]).writeto(
        tmp_path / "c.fits.fz"
    )
    (tmp_path / "g.fits.gz").write_bytes(gzip.compress((tmp_path / "ext.fits").read_bytes()))
    for name in ("ext.fits", "c.fits.fz", "g.fits.gz"):
        assert sniff(tmp_path / name) == "fits", name
        (fr,) = read_frames(tmp_path / name)
        np.testing.assert_array_equal(fr.image, data, err_msg=name)
        assert fr.original_dtype == "int32" and not fr.lossy


def test_quantized_float_compression_is_lossy(tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data)]).writeto(tmp_path / "q.fits")
    assert read_frames(tmp_path / "q.fits")[0].lossy


def test_no_image_and_garbage(tmp_path: Path) -> None:
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="J", array=np.arange(3))])
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "table.fits")
    with pytest.raises(ReadError, match=r"table.fits: no image HDU"):
        read_frames(tmp_path / "table.fits")
    (tmp_path / "bad.fits").write_bytes(b"SIMPLE  =  garbage" + bytes(100))
    with pytest.raises(ReadError, match=r"bad.fits"):
        read_frames(tmp_path / "bad.fits")


def test_astropy_bundled_sky_images() -> None:
    (m13,) = read_frames(astropy_file("io/fits/hdu/compressed/tests/data/m13.fits"))
    assert m13.image.shape == (300, 300)
    (ngc,) = read_frames(astropy_file("io/fits/tests/data/comp.fits"))  # tile-compressed extension
    assert ngc.image.shape == (300, 440) and ngc.subject_id == "NGC 1316"


def test_shared_fits(shared_data: Path) -> None:
    (horse,) = read_frames(shared_data / "fits" / "HorseHead.fits")
    assert horse.image.shape == (893, 891) and np.isfinite(horse.image).all()
    (m13,) = read_frames(shared_data / "fits" / "M13_blue_0001.fits")
    assert m13.image.shape == (1040, 1392) and m13.original_dtype == "uint16"
    assert m13.image.max() > 255


def test_sky_footprint_from_wcs_and_pointing(tmp_path: Path) -> None:
    from study_data import write_fits

    write_fits(tmp_path / "wcs.fits", 150.0, 2.0, size=64, pixel_arcsec=1.0, obj="M 101")
    frame = read_frames(tmp_path / "wcs.fits")[0]
    ra, dec, radius = frame.sky
    assert (ra, dec) == (pytest.approx(150.0, abs=1e-6), pytest.approx(2.0, abs=1e-6))
    assert radius * 3600 == pytest.approx(32 * 2**0.5, rel=1e-3)  # centre to a corner of a 64" square
    assert frame.subject_id == "M 101" and frame.subject_rule == "object"
    write_fits(tmp_path / "point.fits", 30.0, -10.0, wcs=False)
    frame = read_frames(tmp_path / "point.fits")[0]
    assert frame.sky == (30.0, -10.0, 0.0) and frame.subject_rule == "file"
    fits.PrimaryHDU(np.ones((20, 20), np.float32)).writeto(tmp_path / "bare.fits")
    assert read_frames(tmp_path / "bare.fits")[0].sky is None
