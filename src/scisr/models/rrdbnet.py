"""RRDBNet generator (Wang et al. 2018, "ESRGAN: Enhanced super-resolution generative adversarial networks").

Parameter names follow BasicSR's ``RRDBNet`` (``conv_first``, ``body.N.rdb1.conv1`` ... ``body.N.rdb3.conv5``,
``conv_body``, ``conv_up1``, ``conv_up2``, [``conv_up3``], ``conv_hr``, ``conv_last``), which is the layout of
the official ESRGAN and Real-ESRGAN releases, so their weights load strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scisr.models.base import Generator

RESIDUAL_SCALE = 0.2  # the paper's residual scaling, inside each dense block and around each RRDB


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs (LeakyReLU after the first four) and a scaled residual."""

    def __init__(self, channels: int = 64, growth: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, growth, 3, padding=1)
        self.conv2 = nn.Conv2d(channels + growth, growth, 3, padding=1)
        self.conv3 = nn.Conv2d(channels + 2 * growth, growth, 3, padding=1)
        self.conv4 = nn.Conv2d(channels + 3 * growth, growth, 3, padding=1)
        self.conv5 = nn.Conv2d(channels + 4 * growth, channels, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            # Kaiming initialisation scaled by 0.1 (ESRGAN/BasicSR): a deep stack starts near identity
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual-in-Residual Dense Block: three dense blocks and a scaled residual around them."""

    def __init__(self, channels: int = 64, growth: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(channels, growth)
        self.rdb2 = ResidualDenseBlock(channels, growth)
        self.rdb3 = ResidualDenseBlock(channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class RRDBNet(Generator):
    """ESRGAN's generator: conv, RRDB trunk with a long skip, nearest x2 + conv stages, conv_hr, conv_last.

    ``scale`` 4 is the paper's network; 8 adds a third upsampling stage (``conv_up3``); 2 is Real-ESRGAN's
    variant: the input is pixel-unshuffled by 2 (``in_channels * 4`` channels into ``conv_first``) and the
    x4 body follows (the shape of ``RealESRGAN_x2plus.pth``). With ``global_skip`` the network predicts a
    residual on top of the bicubic upsampled input and ``conv_last`` starts at zero, so an untrained model
    is exactly bicubic upsampling; official weights are trained without it.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        channels: int = 64,
        blocks: int = 23,
        growth: int = 32,
        scale: int = 4,
        global_skip: bool = False,
    ) -> None:
        super().__init__("rrdbnet", in_channels, out_channels, scale, global_skip)
        self.unshuffle = 2 if scale == 2 else 1
        self.conv_first = nn.Conv2d(in_channels * self.unshuffle**2, channels, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(channels, growth) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_up1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_up2 = nn.Conv2d(channels, channels, 3, padding=1)
        if scale == 8:
            self.conv_up3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_hr = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_last = nn.Conv2d(channels, self.out_channels, 3, padding=1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        self.start_at_bicubic(self.conv_last)

    def _upsample_stages(self) -> list[nn.Conv2d]:
        return [self.conv_up1, self.conv_up2] + ([self.conv_up3] if self.scale == 8 else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        feat = x
        if self.unshuffle > 1:
            # pixel-unshuffle needs even sides: pad by replication, crop the output back below
            pad_h, pad_w = (-height) % self.unshuffle, (-width) % self.unshuffle
            if pad_h or pad_w:
                feat = F.pad(feat, (0, pad_w, 0, pad_h), mode="replicate")
            feat = F.pixel_unshuffle(feat, self.unshuffle)
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        for conv in self._upsample_stages():
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return self.add_skip(out[..., : height * self.scale, : width * self.scale], x)
