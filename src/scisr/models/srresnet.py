"""SRResNet generator (Ledig et al. 2017, "Photo-realistic single image super-resolution using a GAN")."""

from __future__ import annotations

import torch
from torch import nn

from scisr.models.base import Generator


class ResidualBlock(nn.Module):
    """conv - [BN] - PReLU - conv - [BN], plus the identity."""

    def __init__(self, channels: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm)
        self.bn1 = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
        self.act = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm)
        self.bn2 = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class SRResNet(Generator):
    """SRResNet: 9x9 head, residual blocks with a long skip, pixel-shuffle x2 stages, 9x9 tail.

    With ``global_skip`` the network predicts a residual on top of the bicubic upsampled input and its
    last convolution starts at zero, so an untrained model is exactly bicubic upsampling.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        channels: int = 64,
        blocks: int = 16,
        scale: int = 4,
        batch_norm: bool = False,
        global_skip: bool = True,
    ) -> None:
        super().__init__("srresnet", in_channels, out_channels, scale, global_skip)
        self.conv_first = nn.Sequential(nn.Conv2d(in_channels, channels, 9, padding=4), nn.PReLU(channels))
        self.body = nn.Sequential(*(ResidualBlock(channels, batch_norm) for _ in range(blocks)))
        self.conv_body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm),
            nn.BatchNorm2d(channels) if batch_norm else nn.Identity(),
        )
        stages = []
        for _ in range(scale.bit_length() - 1):
            stages += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(channels)]
        self.upsample = nn.Sequential(*stages)
        self.conv_last = nn.Conv2d(channels, self.out_channels, 9, padding=4)
        self.start_at_bicubic(self.conv_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.conv_first(x)
        return self.add_skip(self.conv_last(self.upsample(head + self.conv_body(self.body(head)))), x)
