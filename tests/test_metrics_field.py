"""Field metrics: MRI inside the head mask, astronomy in physical units with flux conservation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from scisr.io.files import write_png16
from scisr.metrics import rmse
from scisr.metrics_field import (
    bright_sources,
    foreground_scores,
    head_mask,
    otsu_threshold,
    physical_scores,
    score_folder_field,
)
from scisr.prepare.normalize import normalize_image, read_params


def _head(size: int = 96, seed: int = 0) -> np.ndarray:
    """A synthetic axial MRI slice: a bright ellipse with a dark ventricle, in noisy air with specks."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    head = ((y - size / 2) / (0.38 * size)) ** 2 + ((x - size / 2) / (0.3 * size)) ** 2 <= 1
    ventricle = ((y - size / 2) / 6) ** 2 + ((x - size / 2) / 4) ** 2 <= 1
    image = np.where(head, 0.6 + 0.1 * np.sin(x / 3.0), 0.02) + 0.01 * rng.standard_normal((size, size))
    image[ventricle] = 0.05
    image[5, 5] = image[90, 8] = 0.9  # bright specks in the air
    return np.clip(image, 0, 1), head


def test_otsu_splits_two_modes() -> None:
    values = np.concatenate([np.full(500, 0.1), np.full(300, 0.7)]) + 0.01 * np.random.default_rng(0).random(800)
    threshold = otsu_threshold(values)
    assert (values > threshold).sum() == 300 and threshold < 0.7  # every bright value above, every dark below


def test_head_mask_fills_holes_and_drops_specks() -> None:
    image, head = _head()
    mask = head_mask(image)
    assert mask[48, 48]  # the dark ventricle inside the head counts as head
    assert not mask[5, 5] and not mask[90, 8]  # specks in the air do not
    agreement = (mask == head).mean()
    assert agreement > 0.98


def test_foreground_scores_ignore_the_air_and_weigh_the_head() -> None:
    hr, head = _head()
    air_error = hr.copy()
    air_error[~head] += 0.05
    fg = foreground_scores(air_error, hr, crop_border=4)
    assert fg["rmse_fg"] < 1e-3 and fg["ssim_fg"] > 0.97
    assert rmse(air_error, hr, crop_border=4) > 0.02
    assert 0.25 < fg["fg_fraction"] < 0.55

    head_error = hr.copy()
    head_error[head] += 0.05
    fg = foreground_scores(head_error, hr, crop_border=4)
    assert fg["rmse_fg"] == pytest.approx(0.05, rel=0.05)
    assert fg["rmse_fg"] > rmse(head_error, hr, crop_border=4)  # the whole-image score dilutes it with air
    assert fg["psnr_fg"] == pytest.approx(-20 * math.log10(fg["rmse_fg"]))
    assert foreground_scores(hr, hr, crop_border=4)["psnr_fg"] == math.inf


def _sky(shape=(96, 96), seed=0):
    """Physical sky: background 100 counts, noise, and five Gaussian stars of known flux."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[0], : shape[1]]
    image = 100 + 2 * rng.standard_normal(shape)
    centres = [(20, 20), (20, 70), (50, 45), (75, 20), (75, 75)]
    for k, (r, c) in enumerate(centres):
        image += (4000 - 500 * k) * np.exp(-((y - r) ** 2 + (x - c) ** 2) / (2 * 1.5**2))
    return image, centres


def _normalize(image):
    # high percentile 100: no star is clipped, so fluxes survive normalization
    return normalize_image(image, low_percentile=0.5, high_percentile=100, stretch="asinh", asinh_a=0.1)


def test_physical_scores_perfect_prediction() -> None:
    sky, centres = _sky()
    hr, params = _normalize(sky)
    found = bright_sources(sky - np.median(sky))
    assert sorted(found) == sorted(centres)
    scores = physical_scores(hr, hr, params, crop_border=0)
    assert scores["rmse_phys"] == 0 and scores["total_flux_rel_err"] == 0
    assert scores["aperture_flux_rel_err"] == 0 and scores["n_sources"] == 5


def test_moved_flux_is_caught_though_pixels_look_alike() -> None:
    sky, _centres = _sky()
    hr, params = _normalize(sky)
    # a prediction that keeps every star but moves the brightest one 3 px and halves another
    moved = sky.copy()
    y, x = np.mgrid[: sky.shape[0], : sky.shape[1]]
    star = lambda r, c, f: f * np.exp(-((y - r) ** 2 + (x - c) ** 2) / (2 * 1.5**2))  # noqa: E731
    moved += star(23, 20, 4000) - star(20, 20, 4000) - star(50, 45, 1500)
    pred = _renormalize(moved, params)
    scores = physical_scores(pred, hr, params, crop_border=0)
    assert scores["n_sources"] == 5
    assert scores["aperture_flux_bias"] < -0.1  # flux went missing from the apertures
    assert scores["aperture_flux_rel_err"] >= -scores["aperture_flux_bias"] > 0.1  # one star lost half its flux
    assert scores["total_flux_rel_err"] == pytest.approx(
        -1500 * 2 * math.pi * 1.5**2 / (sky - np.median(sky)).sum(), rel=0.05
    )


def _renormalize(image, params):
    """Map a physical image with another image's normalization parameters (what a prediction carries)."""
    a = params["asinh_a"]
    scaled = np.clip((image - params["low_value"]) / (params["high_value"] - params["low_value"]), 0, 1)
    return np.arcsinh(scaled / a) / np.arcsinh(1 / a)


def test_score_folder_field_writes_tables(tmp_path) -> None:
    sky, _ = _sky()
    hr, params = _normalize(sky)
    for folder, image in (("HR", hr), ("pred", hr)):
        write_png16(tmp_path / folder / "img_t0000.png", image)
    pd.DataFrame(
        [
            {
                "image_id": "img",
                **params,
                "crop_top": 0,
                "crop_left": 0,
                "rows": 96,
                "cols": 96,
                "status": "ok",
                "reason": "",
            }
        ]
    ).to_csv(tmp_path / "params.tsv", sep="\t", index=False)
    table = score_folder_field(
        tmp_path / "pred",
        tmp_path / "HR",
        tmp_path / "astro.tsv",
        border=4,
        field="astronomy",
        params=read_params(tmp_path / "params.tsv"),
        source_of={"img_t0000": "img"},
    )
    assert list(table.columns)[:2] == ["image_id", "rmse_phys"] and table["n_sources"].iloc[0] >= 1
    assert table["rmse_phys"].iloc[0] == 0 and table["total_flux_rel_err"].iloc[0] == 0
    assert (tmp_path / "astro.tsv").is_file()
    with pytest.raises(ValueError, match="no normalization parameters for source image 'img_t0000'"):
        score_folder_field(
            tmp_path / "pred",
            tmp_path / "HR",
            tmp_path / "x.tsv",
            border=4,
            field="astronomy",
            params=read_params(tmp_path / "params.tsv"),
        )
    mri = score_folder_field(tmp_path / "pred", tmp_path / "HR", tmp_path / "mri.tsv", border=4, field="mri")
    assert list(mri.columns) == ["image_id", "fg_fraction", "rmse_fg", "psnr_fg", "ssim_fg"]


def test_a_moved_star_keeps_total_flux_but_not_aperture_flux() -> None:
    sky, _ = _sky()
    hr, params = _normalize(sky)
    y, x = np.mgrid[: sky.shape[0], : sky.shape[1]]
    star = lambda r, c: 4000 * np.exp(-((y - r) ** 2 + (x - c) ** 2) / 4.5)  # noqa: E731
    moved = sky + star(25, 20) - star(20, 20)
    scores = physical_scores(_renormalize(moved, params), hr, params, crop_border=0)
    assert abs(scores["total_flux_rel_err"]) < 0.01  # every photon is still in the image...
    assert scores["aperture_flux_bias"] < -0.05  # ...but not where the star is
