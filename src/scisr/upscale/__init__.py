"""`scisr upscale`: a trained model applied to users' own DICOM, FITS, PNG and TIFF files.

Inputs are normalized the way the model's training data were (the card's normalization, per-image
percentiles), upscaled in blended tiles (scisr.tiling) and mapped back to the input's units; each
file is written in its own format (scisr.io.dicom_writer, fits_writer, raster_writer). Exit codes:
see `scisr.upscale.command` (0 ok, 2 usage, 3 model, 4 input).
"""

from scisr.upscale.command import (
    EXIT_ERROR,
    EXIT_INPUT,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_USAGE,
    ModelMismatch,
    Options,
    upscale_paths,
)
from scisr.upscale.units import RANGE_MODES, upscale_physical

__all__ = [
    "EXIT_ERROR",
    "EXIT_INPUT",
    "EXIT_MODEL",
    "EXIT_OK",
    "EXIT_USAGE",
    "RANGE_MODES",
    "ModelMismatch",
    "Options",
    "upscale_paths",
    "upscale_physical",
]
