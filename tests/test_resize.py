"""MATLAB-equivalent bicubic imresize: reference values and properties."""

import numpy as np
import pytest

from scisr.prepare.resize import cubic, imresize, weight_matrix


def test_matches_octave_reference_without_antialiasing():
    # Octave/MATLAB: imresize(reshape(0:15, 4, 4)', 0.5, 'bicubic', 'AntiAliasing', false)
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    expected = [[2.1875, 4.3125], [10.6875, 12.8125]]
    np.testing.assert_allclose(imresize(image, 0.5, antialias=False), expected, atol=1e-6)


def test_upscale_row_reference_values():
    # hand-derived with MATLAB's kernel, mapping and mirrored borders
    out = imresize(np.array([[1, 2, 3, 4]], dtype=np.float32), 2)
    expected = [0.90625, 1.1796875, 1.7265625, 2.25, 2.75, 3.2734375, 3.8203125, 4.09375]
    assert out.shape == (2, 8)
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    np.testing.assert_allclose(out[1], expected, atol=1e-6)


def test_kernel_is_keys_a_minus_half():
    assert cubic(np.array([0.0]))[0] == 1.0
    np.testing.assert_allclose(cubic(np.array([1.0, 2.0, 2.5, -1.0])), 0.0, atol=1e-12)
    np.testing.assert_allclose(cubic(np.array([0.5, -0.5, 1.5])), [0.5625, 0.5625, -0.0625])


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2.0, 4.0])
def test_weights_partition_of_unity(scale):
    matrix = weight_matrix(37, int(np.ceil(37 * scale - 1e-9)), scale)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)


def test_sizes_and_dtype():
    image = np.random.default_rng(0).random((1024, 768), dtype=np.float32)
    out = imresize(image, 0.25)
    assert out.shape == (256, 192) and out.dtype == np.float32
    assert imresize(np.zeros((10, 7)), 0.25).shape == (3, 2)  # ceil
    assert imresize(np.zeros((5, 6)), 4).shape == (20, 24)


def test_constant_stays_constant():
    image = np.full((64, 48), 0.37, dtype=np.float32)
    for scale in (0.25, 0.5, 3.0):
        np.testing.assert_allclose(imresize(image, scale), 0.37, atol=1e-6)


def test_linear_ramp_preserved_in_interior_when_upscaling():
    ramp = np.tile(np.arange(32, dtype=np.float64), (16, 1))
    out = imresize(ramp, 4)
    # output column j (0-based) sits at input coordinate (j + 0.5) / 4 - 0.5
    coords = (np.arange(out.shape[1]) + 0.5) / 4 - 0.5
    interior = slice(8, -8)
    np.testing.assert_allclose(out[:, interior], np.broadcast_to(coords[interior], out[:, interior].shape), atol=1e-4)


def test_symmetric_under_flip():
    image = np.random.default_rng(1).random((40, 32))  # sizes divisible by 4: no ceil asymmetry
    for scale in (0.25, 4.0):
        np.testing.assert_allclose(imresize(image[::-1, ::-1], scale), imresize(image, scale)[::-1, ::-1], atol=1e-5)


def test_antialiasing_flattens_fine_checkerboard():
    board = (np.indices((66, 66)).sum(axis=0) % 2).astype(np.float32)
    smooth = imresize(board, 1 / 3)
    aliased = imresize(board, 1 / 3, antialias=False)  # samples land on pixels: pure aliasing
    assert np.abs(smooth - 0.5).max() < 0.02
    assert np.abs(aliased - 0.5).max() > 0.2


def test_up_then_down_returns_close_to_original():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:48, 0:48] / 48
    image = 0.5 + 0.3 * np.sin(2 * np.pi * 2 * xx) * np.cos(2 * np.pi * 1.5 * yy) + 0.01 * rng.random((48, 48))
    back = imresize(imresize(image, 4), 0.25)
    assert back.shape == image.shape
    assert np.abs(back - image)[4:-4, 4:-4].max() < 0.02


def test_three_channels_resized_per_channel():
    image = np.random.default_rng(3).random((20, 16, 3))
    out = imresize(image, 0.5)
    assert out.shape == (10, 8, 3)
    for c in range(3):
        np.testing.assert_allclose(out[..., c], imresize(image[..., c], 0.5), atol=1e-6)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="2-D or 3-D"):
        imresize(np.zeros(5), 0.5)
    with pytest.raises(ValueError, match="scale"):
        imresize(np.zeros((4, 4)), 0)
