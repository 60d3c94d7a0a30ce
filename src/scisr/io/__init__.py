"""Image I/O: readers for DICOM, FITS and raster files (`scisr.io.readers`) and the study's
own array formats (`scisr.io.files`). Importing this package loads neither pydicom nor astropy."""

from scisr.io.frame import BT601, Frame, ReadError, luma

__all__ = ["BT601", "Frame", "ReadError", "luma"]
