"""Image I/O: readers for DICOM, FITS and raster files (`scisr.io.readers`) and the study's
own array formats (`scisr.io.files`). Importing this package loads neither pydicom nor astropy."""

from scisr.io.frame import BT601, Frame, NotAnImageError, ReadError, luma
from scisr.io.limits import DEFAULT_MAX_BYTES

__all__ = ["BT601", "DEFAULT_MAX_BYTES", "Frame", "NotAnImageError", "ReadError", "luma"]
