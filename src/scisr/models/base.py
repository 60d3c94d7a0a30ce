"""What every SciSR generator shares: channels, scale, and the optional global bicubic skip."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SCALES = (2, 4, 8)


class Generator(nn.Module):
    """Base of the generators: checks and records channels and scale; owns the global bicubic skip.

    With ``global_skip`` a generator predicts a residual on top of the bicubic upsampled input and its
    last convolution starts at zero (`start_at_bicubic`), so an untrained model is exactly bicubic
    upsampling. The base registers no parameter: subclasses keep their own (published) parameter names.
    """

    def __init__(self, name: str, in_channels: int, out_channels: int | None, scale: int, global_skip: bool) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if scale not in SCALES:
            raise ValueError(f"{name}: scale must be one of {SCALES}, got {scale}")
        if global_skip and out_channels != in_channels:
            raise ValueError(f"{name}: global_skip needs out_channels == in_channels")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale = scale
        self.global_skip = global_skip

    def start_at_bicubic(self, last: nn.Conv2d) -> None:
        """With the global skip, zero the last convolution: the untrained network outputs bicubic."""
        if self.global_skip:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def add_skip(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """`out` plus the bicubic upsampled input `x` when the global skip is on; `out` otherwise."""
        if not self.global_skip:
            return out
        return out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
