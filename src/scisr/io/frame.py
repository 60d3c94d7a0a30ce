"""The unit every reader returns: one 2-D float32 image plus where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ITU-R BT.601 luma weights, used for every colour -> grey conversion in SciSR.
BT601 = (0.299, 0.587, 0.114)


class ReadError(ValueError):
    """A file that cannot be decoded; the message (one line) names the file and the cause or fix."""

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).split()))


class NotAnImageError(ReadError):
    """A readable file that holds no image (a DICOM SEG, RT structure set, SR, presentation state...)."""


@dataclass
class Frame:
    """One 2-D image in physical units (float32) and its provenance.

    `modality` is the DICOM Modality (MR, CT, ...) for DICOM, "FITS" for FITS files and the
    file format (PNG, JPEG, TIFF, GIF, ...) for raster images. `instance_id` is the DICOM
    SOPInstanceUID ('' when the format has none). `lossy` is True when the stored pixels went
    through lossy compression. `meta` holds format-specific extras (transfer syntax, rescale, ...).
    """

    image: np.ndarray
    frame: int
    subject_id: str
    series_id: str
    instance_id: str
    modality: str
    original_dtype: str
    lossy: bool
    meta: dict[str, Any] = field(default_factory=dict)


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma (0.299 R + 0.587 G + 0.114 B) of an (..., >=3) array, in float64, same units."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb[..., 0] * BT601[0] + rgb[..., 1] * BT601[1] + rgb[..., 2] * BT601[2]


def native_dtype_name(dtype: np.dtype) -> str:
    """Name of a dtype without byte order ('>i2' -> 'int16')."""
    return np.dtype(dtype).newbyteorder("=").name
