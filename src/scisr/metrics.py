"""Full-reference image metrics (RMSE, PSNR, SSIM) on 2-D float images in [0,1], and the score phase.

Every metric has BasicSR's shape `f(img, img2, *, crop_border, data_range=1.0)`. `crop_border`
pixels are removed from each side first. SSIM follows Wang et al.: Gaussian window sigma=1.5,
population covariance. Identical images give rmse 0, psnr inf (kept as inf in score tables:
it is the honest value), ssim 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.metrics import (
    structural_similarity,
)  # not its MSE/PSNR: their module imports scipy.stats (bench/README.md)

from scisr.io.files import atomic_path, read_png16

SCORE_COLUMNS = ["image_id", "rmse", "psnr", "ssim"]


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int) -> tuple[np.ndarray, np.ndarray]:
    """Check two 2-D images of one shape and crop `crop_border` pixels from every side."""
    img, img2 = np.asarray(img, dtype=np.float64), np.asarray(img2, dtype=np.float64)
    if img.shape != img2.shape:
        raise ValueError(f"images differ in shape: {img.shape} vs {img2.shape}")
    if img.ndim != 2:
        raise ValueError(f"metrics expect 2-D images, got shape {img.shape}")
    if crop_border < 0 or 2 * crop_border >= min(img.shape):
        raise ValueError(f"crop_border {crop_border} leaves nothing of a {img.shape} image")
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    return img, img2


def _mse(img: np.ndarray, img2: np.ndarray) -> float:
    """Mean squared error in float64 (scikit-image's formula)."""
    return float(np.mean((img - img2) ** 2, dtype=np.float64))


def rmse(img: np.ndarray, img2: np.ndarray, *, crop_border: int, data_range: float = 1.0) -> float:
    """Root mean squared error (data_range is accepted for a uniform signature; RMSE does not use it)."""
    img, img2 = _prepare(img, img2, crop_border)
    return float(np.sqrt(_mse(img, img2)))


def psnr(img: np.ndarray, img2: np.ndarray, *, crop_border: int, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB for the given data_range; inf for identical images."""
    img, img2 = _prepare(img, img2, crop_border)
    if np.array_equal(img, img2):
        return float("inf")
    return float(10.0 * np.log10(float(data_range) ** 2 / _mse(img, img2)))


def ssim(img: np.ndarray, img2: np.ndarray, *, crop_border: int, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al.: Gaussian window sigma 1.5, population covariance)."""
    img, img2 = _prepare(img, img2, crop_border)
    if min(img.shape) < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {img.shape}")
    return float(
        structural_similarity(
            img,
            img2,
            data_range=data_range,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
    )


def score_images(pairs, *, border: int) -> pd.DataFrame:
    """The score table of (image_id, prediction, HR) triples: image_id, rmse, psnr, ssim, sorted by image_id."""
    records = []
    for image_id, pred, hr in pairs:
        if pred.shape != hr.shape:
            raise ValueError(f"{image_id}: prediction shape {pred.shape} differs from HR {hr.shape}")
        records.append(
            {
                "image_id": image_id,
                "rmse": rmse(pred, hr, crop_border=border),
                "psnr": psnr(pred, hr, crop_border=border),
                "ssim": ssim(pred, hr, crop_border=border),
            }
        )
    return pd.DataFrame(records, columns=SCORE_COLUMNS).sort_values("image_id", ignore_index=True)


def write_scores(table: pd.DataFrame, out_tsv: str | os.PathLike) -> None:
    """Write a score table (the score phase's file: image_id, rmse, psnr, ssim) atomically."""
    with atomic_path(out_tsv) as tmp:
        table[SCORE_COLUMNS].to_csv(tmp, sep="\t", index=False)


def score_folder(
    pred_dir: str | os.PathLike, hr_dir: str | os.PathLike, out_tsv: str | os.PathLike, *, border: int
) -> pd.DataFrame:
    """Score every HR PNG against the same-named prediction; write image_id, rmse, psnr, ssim."""
    pred_dir, hr_dir = Path(pred_dir), Path(hr_dir)
    hr_paths = sorted(hr_dir.glob("*.png"))
    if not hr_paths:
        raise FileNotFoundError(f"{hr_dir}: no HR PNGs to score")
    missing = [p.name for p in hr_paths if not (pred_dir / p.name).exists()]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise FileNotFoundError(f"{pred_dir}: missing predictions for {len(missing)} HR image(s): {shown}")
    try:
        table = score_images(((p.stem, read_png16(pred_dir / p.name), read_png16(p)) for p in hr_paths), border=border)
    except ValueError as error:
        raise ValueError(f"{pred_dir}: {error}") from None
    write_scores(table, out_tsv)
    return table
