"""Where training starts: a freshly initialised generator, or another model's weights (fine-tuning).

A fine-tuned model (config `models.<name>.init`) starts from the init model's generator.pt, read through its
model card. The training settings' generator must describe the same network as the card: same architecture,
and every builder argument equal once the settings are completed with the card's channels and the scale; the
weights then load strictly. An init model whose channels differ from the data's (Real-ESRGAN: RGB) is trained on
single-channel data inside a `ChannelAdapter` (channel repeated in, output channels averaged); the exported
generator.pt holds the inner network's weights, so it loads like the init model's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from scisr.card import ModelCard
from scisr.io.hashing import file_sha256
from scisr.models import ChannelAdapter, adapt_channels, build_generator, generator_arguments
from scisr.train.settings import Settings


@dataclass(frozen=True)
class InitWeights:
    """The model a fine-tuning run starts from: its card, its weights (on the CPU) and their file's sha256."""

    card: ModelCard
    state: dict[str, torch.Tensor]
    sha256: str

    @property
    def name(self) -> str:
        """The init model's name (recorded as the fine-tuned model's `init_from`)."""
        return self.card.name

    @classmethod
    def read(cls, generator: str | os.PathLike, card: str | os.PathLike) -> InitWeights:
        """Read an init model's generator.pt (weights only) and model.yaml."""
        state = torch.load(Path(generator), map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"{generator}: expected a state dict, got {type(state).__name__}")
        return cls(ModelCard.read(card), state, file_sha256(generator))


def start_generator(
    cfg: Settings, data_channels: int, init: InitWeights | None = None, name: str = "model"
) -> tuple[nn.Module, dict]:
    """The generator training starts from, and its builder arguments (as its model card records them).

    Without `init`: built from the settings for `data_channels`-channel data, randomly initialised. With
    `init`: the init model's network with its weights (strict), wrapped in a ChannelAdapter when its channels
    differ from the data's.
    """
    arch = cfg.generator["arch"]
    sizes = {k: v for k, v in cfg.generator.items() if k != "arch"}
    if init is None:
        args = generator_arguments(
            arch, **{"in_channels": data_channels, "out_channels": data_channels, "scale": cfg.scale, **sizes}
        )
        return build_generator(arch, **args), args
    card = init.card
    channels = {"in_channels": card.args.get("in_channels"), "out_channels": card.args.get("out_channels")}
    args = generator_arguments(arch, **{**channels, "scale": cfg.scale, **sizes})
    if arch != card.arch or args != card.args:
        differ = sorted(k for k in set(args) | set(card.args) if args.get(k) != card.args.get(k))
        shown = "; ".join(f"{k}: {args.get(k)!r} vs {card.args.get(k)!r}" for k in differ)
        raise ValueError(
            f"training {name}: its generator settings ({arch}) differ from init model {card.name!r}'s model card "
            f"({card.arch}): {shown or 'architecture'}; set models.{name}.train.generator to the init model's "
            "architecture and sizes"
        )
    with torch.device("meta"):  # no random initialisation: every parameter comes from the init weights
        model = build_generator(arch, **args)
    try:
        model.load_state_dict(init.state, strict=True, assign=True)
    except RuntimeError as error:
        raise RuntimeError(
            f"training {name}: the weights of init model {card.name!r} do not fit its model card's "
            f"{card.arch} ({error})"
        ) from None
    return adapt_channels(model, data_channels), args


def exported(model: nn.Module) -> nn.Module:
    """The network whose weights generator.pt holds: the model itself, or the one inside a ChannelAdapter."""
    return model.model if isinstance(model, ChannelAdapter) else model


def exported_weights(model: nn.Module) -> dict:
    """The state dict saved as generator.pt and as budget snapshots: the exported network's, on the CPU."""
    return {k: v.detach().cpu().contiguous() for k, v in exported(model).state_dict().items()}
