"""Degradations: exact LR sizes, k-space truncation, PSF blur and noise, reproducible LR in split."""

import numpy as np
import pandas as pd
import pytest
from conftest import dataset_settings
from scipy import ndimage

from scisr.io.files import read_png16, write_tiff
from scisr.prepare.degrade import (
    DEGRADATIONS,
    MOFFAT_BETA,
    degrade,
    kspace_band,
    kspace_truncate,
    psf_blur,
    psf_kernel,
)
from scisr.prepare.split import piece_rng, split_dataset

NOISY = {"bicubic": {}, "kspace": {"noise": 0.02}, "psf": {"gain": 200.0, "read_noise": 0.01}}


def _rng(seed=0):
    return np.random.default_rng(seed)


def _cosine(shape, cycles_y, cycles_x, at=(0.0, 0.0)):
    """0.5 + 0.2 cos(...) sampled at pixel positions offset by `at` (HR pixels)."""
    y = np.arange(shape[0])[:, None] + at[0]
    x = np.arange(shape[1])[None, :] + at[1]
    return 0.5 + 0.2 * np.cos(2 * np.pi * (cycles_y * y / shape[0] + cycles_x * x / shape[1]))


def _fwhm(profile: np.ndarray) -> float:
    """FWHM of a symmetric 1-D peak centred in `profile`, by linear interpolation at half maximum."""
    profile = profile / profile.max()
    centre = len(profile) // 2
    right = profile[centre:]
    i = int(np.argmax(right < 0.5))  # first sample below half maximum
    x = i - 1 + (right[i - 1] - 0.5) / (right[i - 1] - right[i])
    return 2 * x


# ------------------------------------------------------------------------------ every kind


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
@pytest.mark.parametrize("shape", [(64, 48), (36, 20)])
def test_every_kind_exact_size_dtype_range(kind, shape):
    hr = _rng().random(shape).astype(np.float32)
    for options in ({}, NOISY[kind]):
        lr = degrade(hr, 4, kind, rng=_rng(1), **options)
        assert lr.shape == (shape[0] // 4, shape[1] // 4) and lr.dtype == np.float32
        assert lr.min() >= 0 and lr.max() <= 1
    assert set(DEGRADATIONS) >= {"bicubic", "kspace", "psf"}


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_constant_image_stays_constant(kind):
    lr = degrade(np.full((32, 40), 0.3), 4, kind)
    np.testing.assert_allclose(lr, 0.3, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(DEGRADATIONS))
def test_every_kind_centres_lr_pixels_on_hr_blocks(kind):
    """LR pixel i sits at HR (4i + 1.5): a blob's centroid maps as it does for bicubic."""
    yy, xx = np.mgrid[:128, :128]
    blob = np.exp(-((yy - 50.3) ** 2 + (xx - 70.7) ** 2) / (2 * 8.0**2))
    lr = degrade(blob, 4, kind).astype(np.float64)
    grid = np.mgrid[: lr.shape[0], : lr.shape[1]]
    centroid = [(g * lr).sum() / lr.sum() for g in grid]
    np.testing.assert_allclose(centroid, [(50.3 - 1.5) / 4, (70.7 - 1.5) / 4], atol=0.02)


def test_bicubic_matches_imresize():
    from scisr.prepare.resize import imresize

    hr = _rng().random((40, 24)).astype(np.float32)
    np.testing.assert_allclose(degrade(hr, 4), np.clip(imresize(hr, 0.25), 0, 1), atol=1e-7)


def test_degrade_errors():
    with pytest.raises(ValueError, match=r"unknown degradation 'blur'; known: bicubic, kspace, psf"):
        degrade(np.zeros((8, 8)), 4, "blur")
    with pytest.raises(ValueError, match="10x8 is not divisible by the scale 4; crop it first"):
        degrade(np.zeros((10, 8)), 4, "kspace")
    with pytest.raises(ValueError, match="2-D"):
        degrade(np.zeros((8, 8, 3)), 4)
    with pytest.raises(ValueError, match=r"'psf' has no option 'sigma'; its options: profile, fwhm"):
        degrade(np.zeros((8, 8)), 4, "psf", sigma=2)
    with pytest.raises(ValueError, match="'bicubic' has no option 'noise'; its options: none"):
        degrade(np.zeros((8, 8)), 4, "bicubic", noise=0.1)
    with pytest.raises(ValueError, match="unknown PSF profile 'airy'; known: gaussian, moffat"):
        degrade(np.zeros((8, 8)), 4, "psf", profile="airy")
    with pytest.raises(ValueError, match="fwhm"):
        degrade(np.zeros((8, 8)), 4, "psf", fwhm=0)
    with pytest.raises(ValueError, match="beta must be > 1"):
        degrade(np.zeros((8, 8)), 4, "psf", profile="moffat", beta=1.0)
    with pytest.raises(ValueError, match="gain must be a finite number >= 0"):
        degrade(np.zeros((8, 8)), 4, "psf", gain=-1)
    with pytest.raises(ValueError, match="align must be 'block' or 'grid'"):
        degrade(np.zeros((8, 8)), 4, "kspace", align="centre")


@pytest.mark.parametrize("kind", ["kspace", "psf"])
def test_random_settings_need_an_rng(kind):
    hr = np.full((16, 16), 0.5)
    with pytest.raises(ValueError, match=f"{kind!r} with .* is random: pass rng=np.random.default_rng"):
        degrade(hr, 4, kind, **NOISY[kind])
    with pytest.raises(TypeError, match=r"numpy.random.Generator"):
        degrade(hr, 4, kind, rng=np.random.RandomState(0), **NOISY[kind])
    degrade(hr, 4, kind)  # noise-free settings need none


@pytest.mark.parametrize("kind", ["kspace", "psf"])
def test_same_seed_same_lr_other_seed_other_lr(kind):
    hr = _rng().random((64, 64))
    first = degrade(hr, 4, kind, rng=_rng(7), **NOISY[kind])
    np.testing.assert_array_equal(first, degrade(hr, 4, kind, rng=_rng(7), **NOISY[kind]))
    assert not np.array_equal(first, degrade(hr, 4, kind, rng=_rng(8), **NOISY[kind]))


# ------------------------------------------------------------------------------ kspace


def test_kspace_band_index_convention():
    assert kspace_band((256, 256), 4) == (slice(96, 160), slice(96, 160))  # frequencies -32..31
    assert kspace_band((36, 20), 4) == (slice(14, 23), slice(8, 13))  # odd n: -4..4 and -2..2


@pytest.mark.parametrize("shape", [(256, 256), (36, 20)])
def test_kspace_lr_spectrum_is_the_central_band(shape):
    hr = _rng().random(shape)
    scale = 4
    n_rows, n_cols = shape[0] // scale, shape[1] // scale
    lr = kspace_truncate(hr, scale, align="grid")
    assert lr.shape == (n_rows, n_cols) and np.iscomplexobj(lr)
    spectrum_hr = np.fft.fftshift(np.fft.fft2(hr))
    spectrum_lr = np.fft.fftshift(np.fft.fft2(lr)) * scale**2
    band = kspace_band(shape, scale)
    np.testing.assert_allclose(spectrum_lr, spectrum_hr[band], rtol=1e-10, atol=1e-9)

    # independently of kspace_band: the band is the signed frequencies k with
    # -(n//2) <= k < n - n//2 (numpy's fftfreq layout of an n-sample axis)
    def kept(size, n):
        k = np.round(np.fft.fftfreq(size) * size)
        return (k >= -(n // 2)) & (k < n - n // 2)

    mask = kept(shape[0], n_rows)[:, None] & kept(shape[1], n_cols)[None, :]
    assert mask.sum() == n_rows * n_cols
    # sinc-upsample the LR by zero-padding its spectrum to the HR size: exactly HR low-passed
    padded = np.zeros(shape, dtype=complex)
    padded[band] = np.fft.fftshift(np.fft.fft2(lr)) * scale**2
    upsampled = np.fft.ifft2(np.fft.ifftshift(padded))
    low_passed = np.fft.ifft2(np.fft.fft2(hr) * mask)
    np.testing.assert_allclose(upsampled, low_passed, atol=1e-12)
    spectrum_up = np.fft.fft2(upsampled)
    assert np.abs(spectrum_up[~mask]).max() < 1e-9 * np.abs(spectrum_up).max()
    np.testing.assert_allclose(spectrum_up[mask], np.fft.fft2(hr)[mask], rtol=1e-10, atol=1e-9)


def test_kspace_block_alignment_is_a_pure_phase_ramp():
    hr = _rng().random((64, 48))
    grid, block = kspace_truncate(hr, 4, align="grid"), kspace_truncate(hr, 4, align="block")
    spectrum_grid = np.fft.fftshift(np.fft.fft2(grid))
    spectrum_block = np.fft.fftshift(np.fft.fft2(block))
    ky = np.fft.fftshift(np.round(np.fft.fftfreq(16) * 16))[:, None]
    kx = np.fft.fftshift(np.round(np.fft.fftfreq(12) * 12))[None, :]
    ramp = np.exp(2j * np.pi * 1.5 * (ky / 64 + kx / 48))
    np.testing.assert_allclose(spectrum_block, spectrum_grid * ramp, atol=1e-10)


def test_kspace_low_frequency_survives_high_frequency_vanishes():
    shape = (128, 96)  # LR 32 x 24: kept |frequencies| <= 15 rows, 11 cols
    low = _cosine(shape, 5, 7)
    np.testing.assert_allclose(degrade(low, 4, "kspace", align="grid"), low[::4, ::4], atol=1e-6)
    at_block_centres = _cosine(shape, 5, 7, at=(1.5, 1.5))[::4, ::4]
    np.testing.assert_allclose(degrade(low, 4, "kspace"), at_block_centres, atol=1e-6)
    for cycles in [(20, 0), (0, 13), (40, 30), (64, 48)]:
        np.testing.assert_allclose(degrade(_cosine(shape, *cycles), 4, "kspace"), 0.5, atol=1e-6)


def test_kspace_noise_std_is_in_lr_units():
    noise = 0.01
    lr = degrade(np.full((512, 512), 0.5), 4, "kspace", rng=_rng(3), noise=noise)
    assert abs(lr.mean() - 0.5) < 0.001
    assert abs(lr.std() / noise - 1) < 0.1  # Rician magnitude ~ Gaussian at SNR 50


# ------------------------------------------------------------------------------ psf


@pytest.mark.parametrize("profile", ["gaussian", "moffat"])
@pytest.mark.parametrize("fwhm", [3.0, 5.0, 8.0])
def test_psf_kernel_fwhm_and_normalisation(profile, fwhm):
    kernel = psf_kernel(fwhm, profile)
    size = kernel.shape[0]
    assert kernel.shape == (size, size) and size % 2 == 1 and size >= 8 * fwhm
    assert abs(kernel.sum() - 1) < 1e-12
    centre = size // 2
    assert np.unravel_index(kernel.argmax(), kernel.shape) == (centre, centre)
    np.testing.assert_allclose(kernel, kernel.T)
    np.testing.assert_allclose(kernel, kernel[::-1, ::-1])
    assert abs(_fwhm(kernel[centre]) / fwhm - 1) < 0.05


def test_moffat_has_wider_wings_than_gaussian():
    gauss, moffat = psf_kernel(6.0, "gaussian"), psf_kernel(6.0, "moffat")
    centre = gauss.shape[0] // 2
    assert moffat[centre, centre + 12] > 5 * gauss[centre, centre + 12]  # at 2 FWHM
    assert psf_kernel(6.0, "moffat", beta=2.5)[centre, centre + 12] > moffat[centre, centre + 12]
    assert MOFFAT_BETA == 4.765


@pytest.mark.parametrize("profile", ["gaussian", "moffat"])
def test_point_source_becomes_the_psf(profile):
    fwhm = 5.0
    point = np.zeros((65, 65))
    point[32, 32] = 1.0
    blurred = psf_blur(point, fwhm, profile)
    kernel = psf_kernel(fwhm, profile)
    r = kernel.shape[0] // 2
    np.testing.assert_allclose(blurred[32 - r : 33 + r, 32 - r : 33 + r], kernel, atol=1e-12)
    assert abs(_fwhm(blurred[32]) / fwhm - 1) < 0.05
    assert abs(_fwhm(blurred[:, 32]) / fwhm - 1) < 0.05


def test_psf_blur_reflects_at_the_border():
    hr = _rng().random((24, 32))
    kernel = psf_kernel(2.0, "moffat")
    np.testing.assert_allclose(psf_blur(hr, 2.0, "moffat"), ndimage.convolve(hr, kernel, mode="reflect"), atol=1e-12)


def test_psf_block_average_conserves_flux_and_default_fwhm_is_scale():
    hr = _rng().random((64, 96)) * 0.8
    blurred = psf_blur(hr, 4.0)
    lr = degrade(hr, 4, "psf")
    assert abs(lr.mean() - blurred.mean()) < 1e-6
    np.testing.assert_allclose(lr, blurred.reshape(16, 4, 24, 4).mean(axis=(1, 3)), atol=1e-6)
    np.testing.assert_array_equal(lr, degrade(hr, 4, "psf", fwhm=4.0))


def test_psf_shot_and_read_noise_variance():
    flat = np.full((512, 512), 0.25)
    gain = 100.0
    lr = degrade(flat, 4, "psf", rng=_rng(5), gain=gain).astype(np.float64)
    assert abs(lr.mean() - 0.25) < 0.002
    assert abs(lr.var() / (0.25 / gain) - 1) < 0.1
    counts = lr * gain
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-4)  # whole photo-electrons
    read = degrade(flat, 4, "psf", rng=_rng(6), read_noise=0.02).astype(np.float64)
    assert abs(read.std() / 0.02 - 1) < 0.1
    both = degrade(flat, 4, "psf", rng=_rng(7), gain=gain, read_noise=0.02).astype(np.float64)
    assert abs(both.var() / (0.25 / gain + 0.02**2) - 1) < 0.1
    assert np.array_equal(degrade(flat, 4, "psf", rng=_rng(5), gain=0), degrade(flat, 4, "psf"))


# ------------------------------------------------------------------------------ split


def _twins(root):
    """Five subjects; twin_a and twin_b have identical pixels."""
    norm = root / "norm"
    rng = _rng(0)
    same = rng.random((32, 32)) * 0.5 + 0.25
    rows = []
    for image_id, image in [("twin_a", same), ("twin_b", same)] + [(f"s{i}", rng.random((32, 32))) for i in range(3)]:
        write_tiff(norm / f"{image_id}.tif", image)
        rows.append({"image_id": image_id, "subject_id": image_id, "status": "ok"})
    pd.DataFrame(rows).to_csv(root / "index.tsv", sep="\t", index=False)
    return norm


def _split(root, norm, out, seed):
    table = split_dataset(
        root / "index.tsv",
        norm,
        {s: root / out / s for s in ("train", "val", "test")},
        root / f"{out}.tsv",
        scale=4,
        seed=seed,
        **(
            dataset_settings("split")
            | {
                "fractions": {"train": 0.6, "val": 0.2, "test": 0.2},
                "tile_size": None,
                "degradation": "psf",
                "degradation_options": {"profile": "moffat", "gain": 50.0, "read_noise": 0.01},
            }
        ),
    )
    return {t.id: read_png16(root / out / t.split / "LR" / f"{t.id}.png") for t in table.itertuples()}


def test_split_lr_noise_reproducible_and_independent_per_image(tmp_path):
    norm = _twins(tmp_path)
    first, again, other = _split(tmp_path, norm, "a", 3), _split(tmp_path, norm, "b", 3), _split(tmp_path, norm, "c", 4)
    assert first.keys() == again.keys() == {"twin_a", "twin_b", "s0", "s1", "s2"}
    for image_id in first:
        np.testing.assert_array_equal(first[image_id], again[image_id])
        assert not np.array_equal(first[image_id], other[image_id])
    assert not np.array_equal(first["twin_a"], first["twin_b"])
    assert np.abs(first["twin_a"] - first["twin_b"]).mean() > 0.01


def test_piece_rng_is_stable():
    # zlib.crc32, not Python's salted hash(): the same stream in every process
    assert piece_rng(3, "twin_a").integers(1 << 30) == np.random.default_rng([3, 1769118813]).integers(1 << 30)
    assert piece_rng(3, "twin_a").random() != piece_rng(3, "twin_b").random()
