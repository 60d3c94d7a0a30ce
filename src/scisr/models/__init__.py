"""Super-resolution networks and the registry that builds them by name."""

from scisr.models.registry import (
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    count_parameters,
    generator_arguments,
)

__all__ = ["DISCRIMINATORS", "GENERATORS", "build_discriminator", "build_generator", "count_parameters",
           "generator_arguments"]
