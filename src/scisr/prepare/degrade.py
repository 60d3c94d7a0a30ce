"""Degradations that turn an HR image into its LR counterpart, chosen by name from a registry.

Every degradation returns exactly (H/scale, W/scale) float32 in [0,1]; H and W must be multiples
of the scale. Registered functions take ``(hr, scale, *, rng, **options)``; `degrade` checks the
option names against the function's keyword parameters. Random ones need ``rng`` (a
``np.random.Generator``) whenever their noise settings are on, so LR images are reproducible.

Geometry: all kinds put LR pixel ``i`` at the centre of HR block ``i``, i.e. at HR coordinate
``scale * i + (scale - 1) / 2`` (pixel centres at integers) - the convention of MATLAB's imresize,
so a bicubic upscale of any LR lines up with its HR.

- ``bicubic``: MATLAB imresize with antialiasing, the SR literature's LR. No options.
- ``kspace`` (MRI): keep the central 1/scale of k-space in each axis, as a scanner acquiring a
  coarser matrix over the same field of view does, and take the magnitude.
- ``psf`` (astronomy): blur by a Gaussian or Moffat PSF, integrate over scale x scale detector
  pixels, then add shot (Poisson) and read (Gaussian) noise.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import numpy as np
from scipy.signal import fftconvolve

from scisr.prepare.resize import imresize

Degradation = Callable[..., np.ndarray]
DEGRADATIONS: dict[str, Degradation] = {}

MOFFAT_BETA = 4.765  # Trujillo et al. (2001): the best Moffat fit to atmospheric turbulence theory
PSF_RADIUS_FWHM = 4.0  # kernel radius in FWHMs: Moffat(4.765) flux beyond it is ~1e-4 of the total


def register(name: str) -> Callable[[Degradation], Degradation]:
    """Decorator adding a degradation `f(hr, scale, *, rng, **options) -> lr` to the registry."""

    def add(function: Degradation) -> Degradation:
        if name in DEGRADATIONS:
            raise ValueError(f"degradation {name!r} is already registered")
        DEGRADATIONS[name] = function
        return function

    return add


def _options_of(function: Degradation) -> list[str]:
    """Names of the options (keyword-only parameters other than rng) a degradation accepts."""
    parameters = inspect.signature(function).parameters.values()
    return [p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.name != "rng"]


def _require_rng(rng: np.random.Generator | None, kind: str, setting: str) -> np.random.Generator:
    """The generator, or a clear error when a random setting has none."""
    if rng is None:
        raise ValueError(
            f"degradation {kind!r} with {setting} is random: pass rng=np.random.default_rng(seed) "
            "so the LR image is reproducible"
        )
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return rng


def _non_negative(name: str, value: float | None) -> float:
    """`value` as a float >= 0 (None counts as 0), or a clear error naming the option."""
    value = 0.0 if value is None else float(value)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"option {name} must be a finite number >= 0, got {value}")
    return value


# --------------------------------------------------------------------------------------- bicubic


@register("bicubic")
def bicubic(hr: np.ndarray, scale: int, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """MATLAB-style bicubic downscaling with antialiasing (the SR literature's LR); deterministic."""
    return imresize(hr, 1.0 / scale)


# ---------------------------------------------------------------------------------------- kspace


def kspace_band(shape: tuple[int, int], scale: int) -> tuple[slice, slice]:
    """Rows and columns of the fftshift-ed HR spectrum that the LR keeps: the central 1/scale.

    For an axis of N samples and n = N / scale, fftshift puts the DC sample at index N // 2; the
    band is ``[N//2 - n//2, N//2 - n//2 + n)``, i.e. signed frequencies ``-(n//2) .. n - n//2 - 1``
    (for N = 256, scale 4: indices 96..159, frequencies -32..31). That is exactly the fftshift
    layout of an n-sample spectrum (DC at n // 2), which is what a scanner acquiring n samples
    measures; for even n the Nyquist line -n/2 is kept and +n/2 is not, as on the n-sample grid
    they are one frequency.
    """
    bands = []
    for size in shape:
        n = size // scale
        start = size // 2 - n // 2
        bands.append(slice(start, start + n))
    return bands[0], bands[1]


def _frequencies(n: int) -> np.ndarray:
    """Signed frequency index of each sample of an fftshift-ed n-sample spectrum."""
    return np.arange(n) - n // 2


def kspace_truncate(
    hr: np.ndarray,
    scale: int,
    *,
    align: str = "block",
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Complex LR image (H/scale, W/scale) whose spectrum is the central band of the HR spectrum.

    ``fftshift(fft2(lr)) * scale**2 == fftshift(fft2(hr))[kspace_band(...)] * ramp``, where the
    factor scale**2 keeps intensities on the HR scale (a constant image stays constant) and
    ``ramp`` is a linear phase: with ``align="grid"`` it is 1 (LR pixel i sits on HR pixel
    scale*i, the scanner's grid); with ``align="block"`` it shifts the image by (scale-1)/2 HR
    pixels so LR pixel i sits at the centre of HR block i, like bicubic and psf. `noise` is the
    standard deviation of the real and of the imaginary part of white complex Gaussian noise,
    added in k-space and expressed in LR image units (normalized intensity).
    """
    if align not in ("block", "grid"):
        raise ValueError(f"option align must be 'block' or 'grid', got {align!r}")
    noise = _non_negative("noise", noise)
    hr = np.asarray(hr, dtype=np.float64)
    rows, cols = hr.shape
    n_rows, n_cols = rows // scale, cols // scale
    band = np.fft.fftshift(np.fft.fft2(hr))[kspace_band(hr.shape, scale)]
    if align == "block":
        shift = (scale - 1) / 2.0
        ramp_rows = np.exp(2j * np.pi * _frequencies(n_rows) * shift / rows)
        ramp_cols = np.exp(2j * np.pi * _frequencies(n_cols) * shift / cols)
        band = band * ramp_rows[:, None] * ramp_cols[None, :]
    if noise > 0:
        rng = _require_rng(rng, "kspace", f"noise={noise:g}")
        # ifft2 of white noise of std s per sample has std s / sqrt(n_rows * n_cols)
        std = noise * scale**2 * math.sqrt(n_rows * n_cols)
        band = band + std * (rng.standard_normal(band.shape) + 1j * rng.standard_normal(band.shape))
    return np.fft.ifft2(np.fft.ifftshift(band)) / scale**2


@register("kspace")
def kspace(
    hr: np.ndarray,
    scale: int,
    *,
    rng: np.random.Generator | None = None,
    noise: float = 0.0,
    align: str = "block",
) -> np.ndarray:
    """MRI: magnitude of the image reconstructed from the central 1/scale of k-space per axis."""
    return np.abs(kspace_truncate(hr, scale, align=align, noise=noise, rng=rng)).astype(np.float32)


# ------------------------------------------------------------------------------------------- psf


def _gaussian(r2: np.ndarray, fwhm: float, beta: float) -> np.ndarray:
    sigma = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    return np.exp(-r2 / (2.0 * sigma**2))


def _moffat(r2: np.ndarray, fwhm: float, beta: float) -> np.ndarray:
    alpha = fwhm / (2.0 * math.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return (1.0 + r2 / alpha**2) ** (-beta)


PSF_PROFILES: dict[str, Callable[[np.ndarray, float, float], np.ndarray]] = {
    "gaussian": _gaussian,
    "moffat": _moffat,
}


def psf_kernel(fwhm: float, profile: str = "gaussian", *, beta: float = MOFFAT_BETA) -> np.ndarray:
    """Normalised (sum 1), odd-sized, centred PSF kernel; `fwhm` in pixels, radius ceil(4 fwhm).

    The profile is sampled at pixel centres (the centre pixel is r = 0). Moffat:
    ``(1 + r²/α²)^-β`` with ``α = fwhm / (2 sqrt(2^(1/β) - 1))``; `beta` is ignored for gaussian.
    """
    if profile not in PSF_PROFILES:
        raise ValueError(f"unknown PSF profile {profile!r}; known: {', '.join(sorted(PSF_PROFILES))}")
    fwhm = float(fwhm)
    if not (fwhm > 0 and math.isfinite(fwhm)):
        raise ValueError(f"option fwhm must be a positive number of HR pixels, got {fwhm}")
    beta = float(beta)
    if not beta > 1:
        raise ValueError(f"option beta must be > 1 (a Moffat profile with beta <= 1 has infinite flux), got {beta}")
    radius = max(1, math.ceil(PSF_RADIUS_FWHM * fwhm))
    axis = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = PSF_PROFILES[profile](axis[:, None] ** 2 + axis[None, :] ** 2, fwhm, beta)
    return kernel / kernel.sum()


def psf_blur(hr: np.ndarray, fwhm: float, profile: str = "gaussian", *, beta: float = MOFFAT_BETA) -> np.ndarray:
    """HR image convolved with `psf_kernel`, reflect boundaries (d c b a | a b c d), float64, same size."""
    kernel = psf_kernel(fwhm, profile, beta=beta)
    radius = kernel.shape[0] // 2
    padded = np.pad(np.asarray(hr, dtype=np.float64), radius, mode="symmetric")
    return fftconvolve(padded, kernel, mode="valid")


def block_mean(image: np.ndarray, scale: int) -> np.ndarray:
    """Mean over disjoint scale x scale blocks (a detector pixel integrating flux)."""
    rows, cols = image.shape
    return image.reshape(rows // scale, scale, cols // scale, scale).mean(axis=(1, 3))


@register("psf")
def psf(
    hr: np.ndarray,
    scale: int,
    *,
    rng: np.random.Generator | None = None,
    profile: str = "gaussian",
    fwhm: float | None = None,
    beta: float = MOFFAT_BETA,
    gain: float | None = None,
    read_noise: float = 0.0,
) -> np.ndarray:
    """Astronomy: PSF blur, scale x scale pixel integration, then shot and read noise.

    `fwhm` is in HR pixels; default ``scale`` (one LR pixel: the coarse detector undersamples
    the PSF, as HST's WFPC2 and WFC3/IR do, and the total blur is close to bicubic's
    antialiasing, so degradations differ by PSF shape and noise rather than by amount of blur).
    `gain`: counts per unit of normalized intensity in one LR pixel; shot noise is
    ``poisson(lr * gain) / gain``; 0 or None turns it off. `read_noise`: std of Gaussian noise in
    normalized units. Either noise needs `rng`.
    """
    fwhm = float(scale) if fwhm is None else fwhm
    gain = _non_negative("gain", gain)
    read_noise = _non_negative("read_noise", read_noise)
    if gain > 0 or read_noise > 0:
        rng = _require_rng(rng, "psf", f"gain={gain:g}, read_noise={read_noise:g}")
    lr = block_mean(psf_blur(hr, fwhm, profile, beta=beta), scale)
    lr = np.clip(lr, 0.0, None)  # FFT round-off can leave -1e-17 where the image is 0
    if gain > 0:
        lr = rng.poisson(lr * gain) / gain
    if read_noise > 0:
        lr = lr + rng.normal(0.0, read_noise, lr.shape)
    return lr.astype(np.float32)


# ------------------------------------------------------------------------------------------ entry


def degrade(
    hr: np.ndarray,
    scale: int,
    kind: str = "bicubic",
    *,
    rng: np.random.Generator | None = None,
    **options,
) -> np.ndarray:
    """Degrade a 2-D [0,1] HR image to exactly (H/scale, W/scale) float32, clipped to [0,1]."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(sorted(DEGRADATIONS))}")
    function = DEGRADATIONS[kind]
    accepted = _options_of(function)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"degradation {kind!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(accepted) or 'none'}"
        )
    hr = np.asarray(hr, dtype=np.float32)
    if hr.ndim != 2:
        raise ValueError(f"degrade expects a 2-D image, got shape {hr.shape}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    scale = int(scale)
    rows, cols = hr.shape
    if rows % scale or cols % scale:
        raise ValueError(
            f"image of {rows}x{cols} is not divisible by the scale {scale}; crop it first "
            "(scisr.prepare.normalize.crop_to_multiple)"
        )
    lr = function(hr, scale, rng=rng, **options)
    expected = (rows // scale, cols // scale)
    if lr.shape != expected:
        raise RuntimeError(f"degradation {kind!r} returned {lr.shape}, expected {expected}")
    return np.clip(lr, 0.0, 1.0).astype(np.float32)
