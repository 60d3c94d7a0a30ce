"""Generators and discriminators by name: add an architecture with one line in a table below."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from scisr.models.discriminator import VGGDiscriminator
from scisr.models.rrdbnet import RRDBNet
from scisr.models.srresnet import SRResNet

GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "srresnet": SRResNet,
    "rrdbnet": RRDBNet,
}
DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "vgg": VGGDiscriminator,
}


def _lookup(table: dict[str, Callable[..., nn.Module]], kind: str, arch: str) -> Callable[..., nn.Module]:
    try:
        return table[arch]
    except KeyError:
        raise KeyError(f"unknown {kind} architecture {arch!r}; known: {', '.join(sorted(table))}") from None


def _build(table: dict[str, Callable[..., nn.Module]], kind: str, arch: str, kwargs: dict) -> nn.Module:
    return _lookup(table, kind, arch)(**kwargs)


def generator_arguments(arch: str, **kwargs) -> dict:
    """All builder arguments of generator `arch`, defaults filled in (what a model card records)."""
    try:
        bound = inspect.signature(_lookup(GENERATORS, "generator", arch)).bind(**kwargs)
    except TypeError as error:
        raise TypeError(f"generator {arch!r}: {error}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def build_generator(arch: str, **kwargs) -> nn.Module:
    """Build the generator registered as `arch` with its keyword arguments."""
    return _build(GENERATORS, "generator", arch, kwargs)


def build_discriminator(arch: str, **kwargs) -> nn.Module:
    """Build the discriminator registered as `arch` with its keyword arguments."""
    return _build(DISCRIMINATORS, "discriminator", arch, kwargs)


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of `model` (optionally only those that require grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
