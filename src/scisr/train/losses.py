"""Pixel, adversarial and perceptual losses by name: a new one is one table entry.

Adversarial losses (``gan.loss``):

- ``bce``: the standard GAN of SRGAN (Ledig et al. 2017). D: BCE(C(real), 1) + BCE(C(fake), 0);
  G: BCE(C(fake), 1) (the non-saturating form).
- ``ragan``: the relativistic average GAN of ESRGAN (Wang et al. 2018),
  D_Ra(a, b) = sigmoid(C(a) - mean C(b)). D: [BCE(C(r) - mean C(f), 1) + BCE(C(f) - mean C(r), 0)] / 2;
  G, symmetric: [BCE(C(r) - mean C(f), 0) + BCE(C(f) - mean C(r), 1)] / 2, so the generator also
  learns from the real images' logits.

All take raw discriminator logits of shape (B, 1) and compute in float32 (safe under bf16 autocast).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from scisr.models.vgg import LAYERS, load_vgg19_features

PIXEL_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,
    "mse": F.mse_loss,
    "l2": F.mse_loss,  # the earlier name of "mse", still accepted
}


def pixel_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The pixel loss `name` as a function (prediction, target) -> scalar."""
    try:
        return PIXEL_LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown pixel_loss {name!r}; known: {', '.join(sorted(PIXEL_LOSSES))}") from None


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


class StandardGANLoss:
    """The standard (non-saturating) GAN objective of SRGAN, on discriminator logits."""

    def generator(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """Generator loss: fakes should be classified real."""
        return _bce(fake, 1.0)

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Discriminator loss: reals real, fakes fake."""
        return _bce(real, 1.0) + _bce(fake, 0.0)


class RelativisticAverageGANLoss:
    """ESRGAN's relativistic average GAN: is a real image more realistic than the average fake?"""

    @staticmethod
    def _relative(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        real, fake = real.float(), fake.float()
        return real - fake.mean(), fake - real.mean()

    def generator(self, fake: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """Generator loss, with the roles of real and fake swapped relative to the discriminator's."""
        if real is None:
            raise ValueError("ragan: the generator loss needs the real images' logits")
        real_vs_fake, fake_vs_real = self._relative(real, fake)
        return 0.5 * (_bce(real_vs_fake, 0.0) + _bce(fake_vs_real, 1.0))

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Discriminator loss: reals more realistic than the average fake, fakes less than the average real."""
        real_vs_fake, fake_vs_real = self._relative(real, fake)
        return 0.5 * (_bce(real_vs_fake, 1.0) + _bce(fake_vs_real, 0.0))


ADVERSARIAL_LOSSES: dict[str, type] = {
    "bce": StandardGANLoss,
    "ragan": RelativisticAverageGANLoss,
}


def adversarial_loss(name: str) -> StandardGANLoss | RelativisticAverageGANLoss:
    """The adversarial objective `name` (a key of ADVERSARIAL_LOSSES)."""
    try:
        return ADVERSARIAL_LOSSES[name]()
    except KeyError:
        known = ", ".join(sorted(ADVERSARIAL_LOSSES))
        raise KeyError(f"unknown gan.loss {name!r}; known: {known}") from None


class PerceptualLoss(nn.Module):
    """L1 distance between frozen VGG19 features (before activation) of the output and the target.

    ESRGAN's perceptual loss at conv5_4 by default. The target's features are computed without
    gradients; `sha256` is the digest of the weights file actually used.
    """

    def __init__(self, weights_file: str | os.PathLike, layer: str = "conv5_4", sha256: str | None = None) -> None:
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"unknown perceptual.layer {layer!r}; known: {', '.join(LAYERS)}")
        self.vgg, self.sha256 = load_vgg19_features(weights_file, layer, sha256)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target_features = self.vgg(target)
        return F.l1_loss(self.vgg(prediction).float(), target_features.float())
