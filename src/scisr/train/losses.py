"""Pixel and adversarial losses by name, so new ones (perceptual, relativistic) are one table entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PIXEL_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,
    "l2": F.mse_loss,
}


def pixel_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The pixel loss `name` as a function (prediction, target) -> scalar."""
    try:
        return PIXEL_LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown pixel_loss {name!r}; known: {', '.join(sorted(PIXEL_LOSSES))}") from None


@dataclass(frozen=True)
class AdversarialLoss:
    """A GAN objective: generator(fake_logits, real_logits) and discriminator(real_logits, fake_logits).

    `generator_needs_real` says whether the generator loss reads the real logits (relativistic losses do),
    so the loop can skip that discriminator pass when it does not.
    """

    generator: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    discriminator: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    generator_needs_real: bool = False


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


ADVERSARIAL_LOSSES: dict[str, AdversarialLoss] = {
    "bce": AdversarialLoss(
        generator=lambda fake, real: _bce(fake, 1.0),
        discriminator=lambda real, fake: _bce(real, 1.0) + _bce(fake, 0.0),
    ),
}


def adversarial_loss(name: str) -> AdversarialLoss:
    """The adversarial objective `name`."""
    try:
        return ADVERSARIAL_LOSSES[name]
    except KeyError:
        known = ", ".join(sorted(ADVERSARIAL_LOSSES))
        raise KeyError(f"unknown gan.loss {name!r}; known: {known}") from None
