"""Degradations that turn an HR image into its LR counterpart, chosen by name from a registry."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from scisr.prepare.resize import imresize

Degradation = Callable[..., np.ndarray]
DEGRADATIONS: dict[str, Degradation] = {}


def register(name: str) -> Callable[[Degradation], Degradation]:
    """Decorator adding a degradation `f(hr, scale, **kwargs) -> lr` to the registry under `name`."""

    def add(function: Degradation) -> Degradation:
        if name in DEGRADATIONS:
            raise ValueError(f"degradation {name!r} is already registered")
        DEGRADATIONS[name] = function
        return function

    return add


@register("bicubic")
def bicubic(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-style bicubic downscaling with antialiasing (the SR literature's LR)."""
    return imresize(hr, 1.0 / scale)


def degrade(hr: np.ndarray, scale: int, kind: str = "bicubic", **kwargs) -> np.ndarray:
    """Degrade a 2-D [0,1] HR image to exactly (H/scale, W/scale), clipped to [0,1]."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(sorted(DEGRADATIONS))}")
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
    lr = DEGRADATIONS[kind](hr, scale, **kwargs)
    expected = (rows // scale, cols // scale)
    if lr.shape != expected:
        raise RuntimeError(f"degradation {kind!r} returned {lr.shape}, expected {expected}")
    return np.clip(lr, 0.0, 1.0).astype(np.float32)
