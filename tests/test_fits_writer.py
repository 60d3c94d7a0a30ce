"""FITS output of `scisr upscale`: WCS agreement at corresponding pixel centres, units, cubes, HDUs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning
from astropy.wcs import WCS
from upscale_helpers import bicubic, model_folder, physical

from scisr.cli import main
from scisr.io.fits_writer import scale_header


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    return model_folder(tmp_path_factory.mktemp("models") / "identity")


def upscale(model, out, *inputs, extra=()) -> int:
    return main(["upscale", "--quiet", "--model", str(model), "--out", str(out), *map(str, inputs), *extra])


def wcs_error_in_input_pixels(before: fits.Header, after: fits.Header, scale: int = 4) -> float:
    """Largest sky distance between corresponding pixel centres, in input pixels (via the input's WCS)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        old, new = WCS(before).celestial, WCS(after).celestial
    ny, nx = int(before["NAXIS2"]), int(before["NAXIS1"])
    y, x = np.meshgrid(np.linspace(0, ny - 1, 7), np.linspace(0, nx - 1, 7), indexing="ij")
    # 0-based: input centre x is output centre (x + 0.5) * scale - 0.5
    sky = new.pixel_to_world_values((x.ravel() + 0.5) * scale - 0.5, (y.ravel() + 0.5) * scale - 0.5)
    back = old.world_to_pixel_values(*sky)
    return float(np.hypot(back[0] - x.ravel(), back[1] - y.ravel()).max())


def tan_cd_header(shape=(40, 48)) -> fits.Header:
    h = fits.Header()
    h["NAXIS"], h["NAXIS1"], h["NAXIS2"] = 2, shape[1], shape[0]
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN", "DEC--TAN"
    h["CRPIX1"], h["CRPIX2"], h["CRVAL1"], h["CRVAL2"] = 20.3, 17.8, 150.1, 2.2
    h["CD1_1"], h["CD1_2"], h["CD2_1"], h["CD2_2"] = -2.1e-4, 3.0e-5, 2.5e-5, 1.9e-4
    h["BUNIT"] = "MJy/sr"
    return h


def test_tan_cd_header_keeps_the_sky():
    h = tan_cd_header()
    assert wcs_error_in_input_pixels(h, scale_header(h, 4)) < 0.01


def test_pc_cdelt_and_sip_keep_the_sky():
    h = tan_cd_header()
    for key in ("CD1_1", "CD1_2", "CD2_1", "CD2_2"):
        del h[key]
    h["CTYPE1"], h["CTYPE2"] = "RA---TAN-SIP", "DEC--TAN-SIP"
    h["CDELT1"], h["CDELT2"], h["PC1_2"], h["PC2_1"] = -2e-4, 2e-4, 0.1, -0.1
    h["A_ORDER"], h["B_ORDER"], h["A_2_0"], h["B_0_2"], h["A_1_1"] = 2, 2, 3e-4, -2e-4, 1e-4
    assert wcs_error_in_input_pixels(h, scale_header(h, 4)) < 0.01


def test_fits_round_trip_wcs_units_history_and_other_hdus(identity, tmp_path):
    image = physical((40, 48)).astype(np.float32)
    table = fits.BinTableHDU.from_columns([fits.Column(name="flux", format="E", array=np.arange(3.0))], name="CAT")
    fits.HDUList([fits.PrimaryHDU(image, tan_cd_header()), table]).writeto(tmp_path / "sky.fits")
    assert upscale(identity, tmp_path / "o", tmp_path / "sky.fits") == 0
    with fits.open(tmp_path / "o" / "sky.fits") as out, fits.open(tmp_path / "sky.fits") as src:
        assert out[0].data.shape == (160, 192) and out[0].header["BUNIT"] == "MJy/sr"
        assert wcs_error_in_input_pixels(src[0].header, out[0].header) < 0.01
        np.testing.assert_allclose(out[0].data, bicubic(image), atol=1e-3 * 4000)
        assert any("SciSR" in str(card) and "mri" in str(card) for card in out[0].header["HISTORY"])
        assert out["CAT"].data["flux"].tolist() == [0.0, 1.0, 2.0]


def test_flux_conserving_mode_keeps_the_total(identity, tmp_path):
    image = physical((32, 32), 10, 100).astype(np.float32)
    fits.PrimaryHDU(image).writeto(tmp_path / "counts.fits")
    assert upscale(identity, tmp_path / "o", tmp_path / "counts.fits", extra=["--flux", "conserve"]) == 0
    data = fits.getdata(tmp_path / "o" / "counts.fits")
    assert data.sum() == pytest.approx(image.sum(), rel=2e-3)  # bicubic keeps the mean up to its border


def test_cube_in_named_hdu_plane_by_plane(identity, tmp_path):
    cube = np.stack([physical((20, 24), seed=i) * (i + 1) for i in range(3)]).astype(np.float32)
    header = tan_cd_header((20, 24))
    header["NAXIS"], header["NAXIS3"] = 3, 3
    fits.HDUList(
        [
            fits.PrimaryHDU(),
            fits.ImageHDU(np.zeros((4, 4), np.float32), name="OTHER"),
            fits.ImageHDU(cube, header, name="SCI"),
        ]
    ).writeto(tmp_path / "cube.fits")
    assert upscale(identity, tmp_path / "o", tmp_path / "cube.fits", extra=["--hdu", "SCI"]) == 0
    with fits.open(tmp_path / "o" / "cube.fits") as out:
        assert out["SCI"].data.shape == (3, 80, 96) and out["OTHER"].data.shape == (4, 4)
        for plane, source in zip(out["SCI"].data, cube):
            np.testing.assert_allclose(plane, bicubic(source), atol=1e-3 * np.ptp(source) * 1.5)
    assert upscale(identity, tmp_path / "o2", tmp_path / "cube.fits", extra=["--hdu", "NOPE"]) == 4


def test_horsehead_wcs(identity, tmp_path, shared_data):
    source = shared_data / "fits" / "HorseHead.fits"
    if not source.is_file():
        pytest.skip(f"{source} is absent")
    with fits.open(source) as hdul:
        small = fits.HDUList([fits.PrimaryHDU(hdul[0].data[:64, :80], hdul[0].header), hdul[1].copy()])
        small.writeto(tmp_path / "hh.fits")  # a corner keeps the run short; the WCS keywords are the file's
    assert upscale(identity, tmp_path / "o", tmp_path / "hh.fits") == 0
    with fits.open(tmp_path / "hh.fits") as src, fits.open(tmp_path / "o" / "hh.fits") as out:
        assert wcs_error_in_input_pixels(src[0].header, out[0].header) < 0.01
        assert out[0].data.dtype.kind == "f" and out[0].data.shape == (256, 320) and len(out) == 2
