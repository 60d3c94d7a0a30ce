"""Raster writer for upscaled images: PNG and TIFF in the source's sample type.

Conventions:
- PNG keeps the source's 8 or 16 bits; TIFF keeps its integer type or writes float32 for float
  sources (every frame a page). Other raster formats (JPEG, GIF, BMP, WebP, ...) become PNG of
  their bit depth (8 bits), because they are lossy or palette formats.
- Integer outputs round to the nearest value and clip to the type's range: these formats have no
  rescale slot. The number of clipped pixels is returned so the caller can report it. NaN becomes 0.
- Colour sources were read as BT.601 luma and are written grey.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import tifffile
from PIL import Image

from scisr.io.files import atomic_path

SUFFIXES = {"PNG": ".png", "TIFF": ".tif"}


def output_suffix(file_format: str) -> str:
    """The file suffix an upscaled raster of `file_format` is written with (".png" or ".tif")."""
    return SUFFIXES.get(file_format.upper(), ".png")


def write_upscaled_raster(
    out: str | os.PathLike, frames: Sequence[np.ndarray], file_format: str, original_dtype: str
) -> int:
    """Write HR frames in the source's sample type; return how many pixels were clipped to its range."""
    tiff = file_format.upper() == "TIFF"
    dtype = np.dtype(original_dtype) if original_dtype in np.sctypeDict else np.dtype(np.uint8)
    if tiff and dtype.kind == "f":
        stack, clipped = np.stack([np.asarray(f, np.float32) for f in frames]), 0
    else:
        if dtype.kind not in "iu" or (not tiff and dtype not in (np.uint8, np.uint16)):
            dtype = np.dtype(np.uint16 if dtype.itemsize > 1 else np.uint8)
        info = np.iinfo(dtype)
        values = np.round(np.nan_to_num(np.stack([np.asarray(f, np.float64) for f in frames])))
        clipped = int(np.count_nonzero((values < info.min) | (values > info.max)))
        stack = np.clip(values, info.min, info.max).astype(dtype)
    with atomic_path(out) as tmp:
        if tiff:
            tifffile.imwrite(tmp, stack if len(frames) > 1 else stack[0], compression="zlib", photometric="minisblack")
        else:
            Image.fromarray(stack[0]).save(tmp, format="PNG")
    return clipped
