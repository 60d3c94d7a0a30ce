"""Exponential moving average of a model's weights (the generator that is validated and exported)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of `model` whose parameters follow ema = decay * ema + (1 - decay) * model.

    Buffers (e.g. batch-norm running statistics) are copied, not averaged. The copy starts equal to
    `model`; `update` is called after each optimizer step.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards `model`'s current weights."""
        d = self.decay
        for average, current in zip(self.model.parameters(), model.parameters(), strict=True):
            average.mul_(d).add_(current.detach(), alpha=1.0 - d)
        for average, current in zip(self.model.buffers(), model.buffers(), strict=True):
            average.copy_(current)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged model's state dict."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the averaged weights from `state_dict()`."""
        self.model.load_state_dict(state, strict=True)
