"""Physical units in, physical units out: normalize like the training data, upscale, map back."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from scisr.prepare.normalize import denormalize, normalize_image
from scisr.tiling import upscale_tiled

RANGE_MODES = ("extrapolate", "clip")
# What `scisr upscale` applies where a model card records no normalization of its training data (an imported
# model: trained on photographs, nothing to copy): robust percentiles, linear. A policy of this command, not a
# study setting (those come from config/schema.yaml through the card).
UNRECORDED = {"low_percentile": 0.5, "high_percentile": 99.5, "stretch": "none", "asinh_a": 0.1}
_BLOCK_ROWS = 256  # LR rows converted back to physical units at a time


def normalize_settings(normalization: dict) -> dict:
    """The normalize_image keyword arguments recorded in a model card (missing ones: `UNRECORDED`)."""
    return {key: normalization.get(key, default) for key, default in UNRECORDED.items()}


def upscale_physical(
    model: nn.Module,
    image: np.ndarray,
    scale: int,
    normalization: dict,
    out: np.ndarray,
    *,
    range_mode: str = "extrapolate",
    tile: int,
    overlap: int | None = None,
    batch: int = 1,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Upscale a 2-D image in physical units into `out` (H*scale, W*scale), in the same units (`precision`: the
        network's, scisr.tiling.upscale_tiled; "bf16" is a lossy preview).

        The image is normalized with the training data's settings from its own percentiles. Values
        outside the percentile range: `range_mode="extrapolate"` (default) maps them by the same linear
        (or asinh) formula beyond [0, 1] and back, so nothing is lost; `"clip"` clips them to [0, 1] as
        the training data were and clips the output to the same range. Non-finite pixels enter the
        network as the low percentile and come out NaN over their scale x scale block. A constant image
        or one without finite values is returned constant (or all NaN) without running the network; one
    that is constant between the percentiles is normalized between its minimum and maximum.
    """
    if range_mode not in RANGE_MODES:
        raise ValueError(f"range mode must be one of {', '.join(RANGE_MODES)}, got {range_mode!r}")
    image = np.asarray(image, dtype=np.float32)
    invalid = ~np.isfinite(image)
    finite = image[~invalid]
    if finite.size == 0 or finite.min() == finite.max():
        out[...] = finite[0] if finite.size else np.nan
        return out
    settings = normalize_settings(normalization)
    try:
        norm, params = normalize_image(np.where(invalid, np.nan, image), **settings, clip=range_mode == "clip")
    except ValueError:  # constant between the percentiles: use the full range instead
        settings.update(low_percentile=0.0, high_percentile=100.0)
        norm, params = normalize_image(np.where(invalid, np.nan, image), **settings, clip=range_mode == "clip")
    upscale_tiled(
        model,
        norm,
        scale,
        tile=tile,
        overlap=overlap,
        batch=batch,
        device=device,
        out=out,
        progress=progress,
        precision=precision,
    )
    for row in range(0, image.shape[0], _BLOCK_ROWS):
        block = np.s_[row * scale : (row + _BLOCK_ROWS) * scale]
        values = np.clip(out[block], 0.0, 1.0) if range_mode == "clip" else out[block]
        physical = denormalize(values, params)
        mask = invalid[row : row + _BLOCK_ROWS]
        if mask.any():
            physical[np.repeat(np.repeat(mask, scale, axis=0), scale, axis=1)] = np.nan
        out[block] = physical
    return out
