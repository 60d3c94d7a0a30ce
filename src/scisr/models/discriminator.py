"""SRGAN-style VGG discriminator with adaptive pooling, so it accepts any patch size."""

from __future__ import annotations

import torch
from torch import nn


def _conv(in_ch: int, out_ch: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class VGGDiscriminator(nn.Module):
    """Eight 3x3 convs (every second one strided, channels b, b, 2b, 2b, 4b, 4b, 8b, 8b), pooling, dense head.

    ``pool`` is the side of the adaptive average pool before the dense head: 1 (global pooling, cheap)
    or e.g. 6 (SRGAN's 96-px layout, whose dense layer dominates the cost). Returns one logit per image.
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_channels: int = 64,
        pool: int = 1,
        dense_features: int = 1024,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        b = base_channels
        widths = [b, b, 2 * b, 2 * b, 4 * b, 4 * b, 8 * b, 8 * b]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, b, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        for i in range(1, len(widths)):
            layers += _conv(widths[i - 1], widths[i], stride=2 if i % 2 else 1, batch_norm=batch_norm)
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(widths[-1] * pool * pool, dense_features),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(dense_features, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))
