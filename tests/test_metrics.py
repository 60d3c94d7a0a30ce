"""RMSE, PSNR and SSIM conventions, border cropping, and folder scoring."""

import numpy as np
import pandas as pd
import pytest
from skimage.metrics import structural_similarity

from scisr.io.files import write_png16
from scisr.metrics import psnr, rmse, score_folder, ssim


def _image(seed=0, shape=(48, 48)):
    return np.random.default_rng(seed).random(shape) * 0.8 + 0.1


def test_constant_offset_known_values():
    image = _image()
    shifted = image + 0.1
    assert rmse(image, shifted, crop_border=0) == pytest.approx(0.1)
    assert psnr(image, shifted, crop_border=0) == pytest.approx(20.0)


def test_identical_images():
    image = _image()
    assert rmse(image, image, crop_border=4) == 0
    assert psnr(image, image, crop_border=4) == float("inf")
    assert ssim(image, image, crop_border=4) == pytest.approx(1.0)


def test_ssim_matches_skimage_with_wang_convention():
    a, b = _image(1), np.clip(_image(1) + np.random.default_rng(2).normal(0, 0.05, (48, 48)), 0, 1)
    expected = structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(a, b, crop_border=0) == pytest.approx(expected)
    assert ssim(a, b, crop_border=4) == pytest.approx(
        structural_similarity(
            a[4:-4, 4:-4], b[4:-4, 4:-4], data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def test_crop_border_ignores_border_errors():
    a = _image(3)
    b = a + 0.01
    c = b.copy()
    c[:4] = 0
    c[:, -4:] = 1
    for metric in (rmse, psnr, ssim):
        assert metric(a, c, crop_border=4) == pytest.approx(metric(a, b, crop_border=4))
        assert metric(a, c, crop_border=0) != pytest.approx(metric(a, b, crop_border=0))


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        rmse(np.zeros((8, 8)), np.zeros((8, 9)), crop_border=0)


def test_score_folder(tmp_path):
    hr_dir, pred_dir = tmp_path / "hr", tmp_path / "pred"
    for name in ("b", "a"):
        write_png16(hr_dir / f"{name}.png", _image(ord(name)))
    write_png16(pred_dir / "a.png", _image(ord("a")))
    write_png16(pred_dir / "b.png", _image(ord("b")) * 0.9)
    table = score_folder(pred_dir, hr_dir, tmp_path / "scores.tsv", border=4)
    saved = pd.read_csv(tmp_path / "scores.tsv", sep="\t")
    assert list(saved.columns) == ["image_id", "rmse", "psnr", "ssim"]
    assert list(saved["image_id"]) == ["a", "b"] == list(table["image_id"])
    assert saved.loc[0, "psnr"] == float("inf") and saved.loc[0, "rmse"] == 0
    assert 0 < saved.loc[1, "ssim"] < 1 and np.isfinite(saved.loc[1, "psnr"])


def test_score_folder_missing_prediction_named(tmp_path):
    write_png16(tmp_path / "hr" / "only_hr.png", _image())
    (tmp_path / "pred").mkdir()
    with pytest.raises(FileNotFoundError, match=r"only_hr.png"):
        score_folder(tmp_path / "pred", tmp_path / "hr", tmp_path / "s.tsv", border=4)
