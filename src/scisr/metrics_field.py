"""Metrics that mean something to each field: MRI inside the head, astronomy in physical units with flux.

Score-phase module (it uses scikit-image's SSIM map, as `scisr.metrics` does). Conventions:

MRI (`foreground_scores`): the foreground (head) mask is computed on the HR image only, after the
border crop: Otsu's threshold on HR (256-bin histogram), binary closing with a 3x3 cross
(MASK_CLOSING iterations) to join the skull and tissue edges, hole filling (ventricles and dark
tissue inside the head count as head), then the largest connected component (drops stray
noise pixels in the air). RMSE and PSNR (data_range 1) use the pixels inside the mask; SSIM is
the mean of the SSIM map (Gaussian window sigma 1.5, as scisr.metrics) inside the mask.

Astronomy (`physical_scores`): both images are mapped back to the physical units of the
extracted frame with `scisr.prepare.normalize.denormalize` and that image's params.tsv row
(the asinh stretch is a display transform; flux is linear in physical units). Caveat: values
outside the normalization's percentiles were clipped to [0, 1] before the split, so the
brightest pixels (above the high percentile) are clipped in HR and predictions alike.
- rmse_phys in physical units; psnr_phys with data_range = high_value - low_value.
- Fluxes are measured above the sky: the sky level is the median of HR (physical) and is
  subtracted from both images. total_flux_rel_err = (sum pred - sum HR) / |sum HR|.
- Aperture photometry of the brightest sources: local maxima of the sky-subtracted HR in a
  (2 * APERTURE_RADIUS + 1)-px window, above the sky + DETECT_SIGMA * sigma (sigma = 1.4826 x
  the median absolute deviation of HR), at least APERTURE_RADIUS px from the edge and
  2 * APERTURE_RADIUS px from a brighter kept source; the N_SOURCES brightest are kept. Their flux
  is summed in a circular aperture of APERTURE_RADIUS HR px around the HR peak, in HR and
  prediction alike. aperture_flux_rel_err is the mean of |pred - HR| / HR over those sources,
  aperture_flux_bias the mean of (pred - HR) / HR; NaN with n_sources = 0 when none is found.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.metrics import structural_similarity

from scisr.io.files import atomic_path, read_png16
from scisr.prepare.normalize import denormalize, read_params
from scisr.prepare.split import read_split_table

MASK_CLOSING = 2
APERTURE_RADIUS = 6
DETECT_SIGMA = 5.0
N_SOURCES = 5
FOREGROUND_COLUMNS = ["image_id", "fg_fraction", "rmse_fg", "psnr_fg", "ssim_fg"]
PHYSICAL_COLUMNS = [
    "image_id",
    "rmse_phys",
    "psnr_phys",
    "total_flux_rel_err",
    "aperture_flux_rel_err",
    "aperture_flux_bias",
    "n_sources",
]
FIELDS = ("mri", "astronomy")
FIELD_COLUMNS = {"mri": FOREGROUND_COLUMNS, "astronomy": PHYSICAL_COLUMNS}


def _crop(image: np.ndarray, border: int) -> np.ndarray:
    """Remove `border` pixels from every side of a 2-D image."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"field metrics expect 2-D images, got shape {image.shape}")
    if border < 0 or 2 * border >= min(image.shape):
        raise ValueError(f"crop_border {border} leaves nothing of a {image.shape} image")
    return image[border:-border, border:-border] if border else image


def _check(pred: np.ndarray, hr: np.ndarray) -> None:
    """Raise when two images differ in shape."""
    if np.shape(pred) != np.shape(hr):
        raise ValueError(f"images differ in shape: {np.shape(pred)} vs {np.shape(hr)}")


def otsu_threshold(image: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the level that maximises the between-class variance of a `bins`-bin histogram."""
    values = np.asarray(image, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_low = sum_low / weight_low
        mean_high = (sum_low[-1] - sum_low) / weight_high
        between = weight_low * weight_high * (mean_low - mean_high) ** 2
    between = np.nan_to_num(between[:-1], nan=-1.0)
    return float(edges[1:][int(np.argmax(between))])


def head_mask(hr: np.ndarray) -> np.ndarray:
    """Foreground (head) mask of an MRI image: Otsu threshold, closing, hole filling, largest component."""
    image = np.asarray(hr, dtype=np.float64)
    mask = image > otsu_threshold(image)
    mask = ndimage.binary_closing(mask, iterations=MASK_CLOSING, border_value=0)
    mask = ndimage.binary_fill_holes(mask)
    labels, count = ndimage.label(mask)
    if count > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        mask = labels == (1 + int(np.argmax(sizes)))
    return mask


def foreground_scores(
    pred: np.ndarray, hr: np.ndarray, *, crop_border: int, data_range: float = 1.0, mask: np.ndarray | None = None
) -> dict[str, float]:
    """RMSE, PSNR and SSIM inside the HR head mask (after the border crop), and the mask's area fraction."""
    _check(pred, hr)
    pred, hr = _crop(pred, crop_border), _crop(hr, crop_border)
    mask = head_mask(hr) if mask is None else _crop(mask, crop_border).astype(bool)
    if not mask.any():
        return {"fg_fraction": 0.0, "rmse_fg": math.nan, "psnr_fg": math.nan, "ssim_fg": math.nan}
    mse = float(np.mean((pred[mask] - hr[mask]) ** 2))
    psnr = math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)
    _, ssim_map = structural_similarity(
        hr, pred, data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, full=True
    )
    return {
        "fg_fraction": float(mask.mean()),
        "rmse_fg": math.sqrt(mse),
        "psnr_fg": psnr,
        "ssim_fg": float(ssim_map[mask].mean()),
    }


def bright_sources(
    image: np.ndarray, *, radius: int = APERTURE_RADIUS, n_sources: int = N_SOURCES, sigma: float = DETECT_SIGMA
) -> list[tuple[int, int]]:
    """(row, col) of the brightest isolated peaks of a sky-subtracted image (see the module docstring)."""
    image = np.asarray(image, dtype=np.float64)
    noise = 1.4826 * float(np.median(np.abs(image - np.median(image))))
    peaks = (image == ndimage.maximum_filter(image, size=2 * radius + 1, mode="nearest")) & (image > sigma * noise)
    peaks &= image > 0
    rows, cols = np.nonzero(peaks)
    inside = (rows >= radius) & (rows < image.shape[0] - radius) & (cols >= radius) & (cols < image.shape[1] - radius)
    rows, cols = rows[inside], cols[inside]
    kept: list[tuple[int, int]] = []
    for index in np.argsort(-image[rows, cols], kind="stable"):
        r, c = int(rows[index]), int(cols[index])
        if all((r - kr) ** 2 + (c - kc) ** 2 >= (2 * radius) ** 2 for kr, kc in kept):
            kept.append((r, c))
        if len(kept) == n_sources:
            break
    return kept


def aperture_flux(image: np.ndarray, centre: tuple[int, int], radius: int = APERTURE_RADIUS) -> float:
    """Sum of `image` inside a circle of `radius` px around `centre`."""
    rows, cols = np.ogrid[: image.shape[0], : image.shape[1]]
    inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    return float(np.asarray(image, dtype=np.float64)[inside].sum())


def physical_scores(
    pred: np.ndarray,
    hr: np.ndarray,
    params: Mapping,
    *,
    crop_border: int,
    radius: int = APERTURE_RADIUS,
    n_sources: int = N_SOURCES,
) -> dict[str, float]:
    """RMSE/PSNR in physical units and flux conservation (total and aperture) of a normalized prediction."""
    _check(pred, hr)
    pred_phys = denormalize(_crop(pred, crop_border), dict(params))
    hr_phys = denormalize(_crop(hr, crop_border), dict(params))
    data_range = float(params["high_value"]) - float(params["low_value"])
    mse = float(np.mean((pred_phys - hr_phys) ** 2))
    psnr = math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)
    sky = float(np.median(hr_phys))
    pred_sky, hr_sky = pred_phys - sky, hr_phys - sky
    total_hr = float(hr_sky.sum())
    total_rel = (float(pred_sky.sum()) - total_hr) / abs(total_hr) if total_hr else math.nan
    sources = bright_sources(hr_sky, radius=radius, n_sources=n_sources)
    errors = []
    for centre in sources:
        reference = aperture_flux(hr_sky, centre, radius)
        if reference > 0:
            errors.append((aperture_flux(pred_sky, centre, radius) - reference) / reference)
    return {
        "rmse_phys": math.sqrt(mse),
        "psnr_phys": psnr,
        "total_flux_rel_err": total_rel,
        "aperture_flux_rel_err": float(np.mean(np.abs(errors))) if errors else math.nan,
        "aperture_flux_bias": float(np.mean(errors)) if errors else math.nan,
        "n_sources": len(errors),
    }


def score_folder_field(
    pred_dir: str | os.PathLike,
    hr_dir: str | os.PathLike,
    out_tsv: str | os.PathLike,
    *,
    border: int,
    field: str,
    params: Mapping[str, Mapping] | None = None,
    source_of: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Score every HR PNG's prediction with the field's metrics ("mri": head mask; "astronomy": physical).

    For "astronomy", `params` maps a source image_id to its params.tsv row (`read_params`) and
    `source_of` maps a test image id (a tile) to its source image_id (split.tsv's id -> image_id);
    without `source_of` the test id is the source id.
    """
    if field not in ("mri", "astronomy"):
        raise ValueError(f"unknown field {field!r}; choose mri or astronomy")
    if field == "astronomy" and not params:
        raise ValueError(f"{hr_dir}: astronomy scores need the normalize phase's params.tsv (params=...)")
    pred_dir, hr_dir = Path(pred_dir), Path(hr_dir)
    hr_paths = sorted(hr_dir.glob("*.png"))
    if not hr_paths:
        raise FileNotFoundError(f"{hr_dir}: no HR PNGs to score")
    records = []
    for hr_path in hr_paths:
        pred_path = pred_dir / hr_path.name
        if not pred_path.exists():
            raise FileNotFoundError(f"{pred_path}: missing prediction for {hr_path.name}; rerun inference")
        hr, pred = read_png16(hr_path), read_png16(pred_path)
        if field == "mri":
            values = foreground_scores(pred, hr, crop_border=border)
        else:
            source = (source_of or {}).get(hr_path.stem, hr_path.stem)
            if source not in params:
                raise ValueError(
                    f"{hr_path}: no normalization parameters for source image {source!r} in "
                    "params.tsv; rerun normalize and split together"
                )
            values = physical_scores(pred, hr, params[source], crop_border=border)
        records.append({"image_id": hr_path.stem, **values})
    columns = FIELD_COLUMNS[field]
    table = pd.DataFrame(records, columns=columns).sort_values("image_id", ignore_index=True)
    with atomic_path(out_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table


def score_field(
    pred_dir: str | os.PathLike,
    hr_dir: str | os.PathLike,
    out_tsv: str | os.PathLike,
    *,
    border: int,
    field: str,
    params_path: str | os.PathLike | None = None,
    split_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """`score_folder_field` from the phases' files: params.tsv (normalize) and split.tsv (test tile -> source)."""
    params = read_params(params_path) if params_path else None
    source_of = None
    if split_path:
        table = read_split_table(split_path)
        source_of = dict(zip(table["id"], table["image_id"], strict=True))
    return score_folder_field(pred_dir, hr_dir, out_tsv, border=border, field=field, params=params, source_of=source_of)


def read_field_table(path: str | os.PathLike, field: str) -> pd.DataFrame:
    """Read a field-metrics TSV written by `score_folder_field` for `field`, checking its columns."""
    if field not in FIELDS:
        raise ValueError(f"unknown field {field!r}; choose one of {', '.join(FIELDS)}")
    table = pd.read_csv(path, sep="\t", dtype={"image_id": str})
    missing = set(FIELD_COLUMNS[field]) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)} of {field} field metrics; rerun score_field")
    return table[FIELD_COLUMNS[field]]
