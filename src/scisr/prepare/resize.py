"""MATLAB-equivalent bicubic resizing (``imresize(..., 'bicubic')``), the SR literature's convention.

Keys cubic kernel with a = -0.5; when shrinking, the kernel is stretched by 1/scale (antialiasing);
borders are handled by mirroring indices (symmetric padding) as MATLAB does; the output size is
``ceil(in * scale)``. Each axis is resized by one dense weight matrix, so an image costs two matrix
products.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

KERNEL_WIDTH = 4.0


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2 = ax * ax
    ax3 = ax2 * ax
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=64)
def weight_matrix(in_len: int, out_len: int, scale: float, antialias: bool = True) -> np.ndarray:
    """Dense (out_len, in_len) matrix mapping one axis of the input to the output."""
    antialias = antialias and scale < 1
    width = KERNEL_WIDTH / scale if antialias else KERNEL_WIDTH
    x = np.arange(1, out_len + 1, dtype=np.float64)
    # output pixel centre mapped into input coordinates (1-based, MATLAB's convention)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based
    distance = u[:, None] - indices
    weights = scale * cubic(scale * distance) if antialias else cubic(distance)
    weights /= weights.sum(axis=1, keepdims=True)
    # mirror out-of-range indices: [1..n, n..1] repeated (symmetric padding)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    cols = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_len)]
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.broadcast_to(np.arange(out_len)[:, None], cols.shape)
    np.add.at(matrix, (rows, cols), weights)
    matrix.setflags(write=False)
    return matrix


def output_size(in_len: int, scale: float) -> int:
    """Length of one axis after resizing by `scale` (MATLAB: ceil(in * scale))."""
    # a tiny tolerance so that e.g. 1024 * 0.25 is not pushed up by floating-point error
    return math.ceil(in_len * scale - 1e-9)


def imresize(image: np.ndarray, scale: float, *, antialias: bool = True) -> np.ndarray:
    """Resize a 2-D (H, W) or 3-D (H, W, C) image by `scale` like MATLAB's bicubic imresize; float32 out."""
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"imresize expects a 2-D or 3-D (H, W, C) image, got shape {image.shape}")
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"imresize: scale must be a positive finite number, got {scale}")
    height, width = image.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"imresize: empty image of shape {image.shape}")
    out_h, out_w = output_size(height, scale), output_size(width, scale)
    rows = weight_matrix(height, out_h, float(scale), bool(antialias))
    cols = weight_matrix(width, out_w, float(scale), bool(antialias))
    data = image.astype(np.float64, copy=False)
    out = rows @ data @ cols.T if data.ndim == 2 else np.einsum("ih,hwc,jw->ijc", rows, data, cols, optimize=True)
    return out.astype(np.float32)
