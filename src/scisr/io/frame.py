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

    What grouping and frame selection need, filled where the format has it:
    `subject_rule` says where `subject_id` came from ("patient": DICOM PatientID, "study":
    StudyInstanceUID, "object": FITS OBJECT, "file": the file itself). `image_type` is the
    frame's DICOM ImageType, or FrameType of an enhanced object's per-frame groups (values in
    order, e.g. ("ORIGINAL", "PRIMARY", "M", "ND")); `complex_component` is MAGNITUDE, PHASE,
    REAL, IMAGINARY or MIXED when the header says which ('' when unknown). `slice_position` is
    the DICOM slice's position in mm along its normal (ImagePositionPatient projected on the
    cross product of ImageOrientationPatient's row and column directions), None without that
    geometry. `sky` is (RA, Dec, radius) in degrees of a FITS frame's footprint: its centre
    and the largest distance from it to a corner (radius 0 when only a pointing is known).
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
    subject_rule: str = "file"
    image_type: tuple[str, ...] = ()
    complex_component: str = ""
    slice_position: float | None = None
    sky: tuple[float, float, float] | None = None


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma (0.299 R + 0.587 G + 0.114 B) of an (..., >=3) array, in float64, same units."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb[..., 0] * BT601[0] + rgb[..., 1] * BT601[1] + rgb[..., 2] * BT601[2]


def native_dtype_name(dtype: np.dtype) -> str:
    """Name of a dtype without byte order ('>i2' -> 'int16')."""
    return np.dtype(dtype).newbyteorder("=").name
