"""Exponential moving average of a model's weights (the generator that is validated and exported)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A frozen copy of `model` whose parameters follow ema = decay * ema + (1 - decay) * model.

    Buffers (e.g. batch-norm running statistics) are copied, not averaged. The copy starts equal to
    `model`; `update` is called after each optimizer step. With `foreach` (the default) one
    `torch._foreach_lerp_` call moves all parameters (ema + (1 - decay) * (model - ema): the same average, float
    rounding apart) instead of two in-place operations per parameter.
    """

    def __init__(self, model: nn.Module, decay: float, *, foreach: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.foreach = foreach
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards `model`'s current weights."""
        d = self.decay
        averages, currents = list(self.model.parameters()), [p.detach() for p in model.parameters()]
        if len(averages) != len(currents):
            raise ValueError(f"EMA of {len(averages)} parameters cannot follow a model of {len(currents)}")
        if self.foreach and averages:
            torch._foreach_lerp_(averages, currents, 1.0 - d)
        else:
            for average, current in zip(averages, currents, strict=True):
                average.mul_(d).add_(current, alpha=1.0 - d)
        for average, current in zip(self.model.buffers(), model.buffers(), strict=True):
            average.copy_(current)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged model's state dict."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the averaged weights from `state_dict()`."""
        self.model.load_state_dict(state, strict=True)
