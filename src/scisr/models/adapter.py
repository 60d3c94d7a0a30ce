"""Run a 3-channel (RGB) model on single-channel scientific images."""

from __future__ import annotations

import torch
from torch import nn


class ChannelAdapter(nn.Module):
    """Wrap a `model_channels`-channel model: 1-channel input is repeated in and the output channels averaged.

    Input that already has `model_channels` channels goes to the model unchanged. The wrapped model is
    the submodule ``model`` (its state dict keys gain a ``model.`` prefix).
    """

    def __init__(self, model: nn.Module, model_channels: int = 3) -> None:
        super().__init__()
        self.model = model
        self.model_channels = model_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        if channels == self.model_channels:
            return self.model(x)
        if channels != 1:
            raise ValueError(
                f"ChannelAdapter: input has {channels} channels; the model takes {self.model_channels} (or 1, repeated)"
            )
        out = self.model(x.repeat(1, self.model_channels, 1, 1))
        return out.mean(dim=1, keepdim=True)


def model_channels(model: nn.Module) -> int:
    """Input channels of `model`: its ``in_channels`` attribute, else those of its first convolution."""
    channels = getattr(model, "in_channels", None)
    if isinstance(channels, int):
        return channels
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError(f"{type(model).__name__}: cannot tell its input channels (no in_channels, no Conv2d)")


def adapt_channels(model: nn.Module, data_channels: int) -> nn.Module:
    """`model` itself when it takes `data_channels` channels, else wrapped in a ChannelAdapter for 1-channel data."""
    channels = model_channels(model)
    if channels == data_channels:
        return model
    if data_channels == 1:
        return ChannelAdapter(model, model_channels=channels)
    raise ValueError(
        f"{type(model).__name__} takes {channels} channels; cannot adapt it to "
        f"{data_channels}-channel data (only 1-channel data is adapted)"
    )
