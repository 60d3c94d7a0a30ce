"""Super-resolution networks and the registry that builds them by name."""

from scisr.models.adapter import ChannelAdapter, adapt_channels
from scisr.models.importer import PACKAGED, WeightsImportError, import_weights
from scisr.models.ncnn import NcnnFormatError
from scisr.models.pretrained import convert_state_dict, load_pretrained
from scisr.models.registry import (
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    count_parameters,
    generator_arguments,
)

__all__ = [
    "DISCRIMINATORS",
    "GENERATORS",
    "PACKAGED",
    "ChannelAdapter",
    "NcnnFormatError",
    "WeightsImportError",
    "adapt_channels",
    "build_discriminator",
    "build_generator",
    "convert_state_dict",
    "count_parameters",
    "generator_arguments",
    "import_weights",
    "load_pretrained",
]
