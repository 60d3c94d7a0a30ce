"""Model folders and files shared by the upscale tests (a module, not fixtures, so each test file reuses them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scisr.card import ModelCard
from scisr.models import build_generator
from scisr.models.registry import count_parameters, generator_arguments

NORMALIZATION = {"low_percentile": 1.0, "high_percentile": 99.0, "stretch": "none", "asinh_a": 0.1}


def model_folder(folder: Path, *, identity: bool = True, scale: int = 4, channels: int = 1, name: str = "mri") -> Path:
    """A model folder: tiny SRResNet, exactly bicubic when `identity` (zero last conv + bicubic skip)."""
    torch.manual_seed(0)
    args = generator_arguments("srresnet", in_channels=channels, channels=4, blocks=1, scale=scale)
    net = build_generator("srresnet", **args)
    if not identity:
        torch.nn.init.normal_(net.conv_last.weight, std=0.05)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), folder / "generator.pt")
    ModelCard(
        name=name,
        arch="srresnet",
        args=args,
        scale=scale,
        channels=channels,
        parameters=count_parameters(net),
        normalization=dict(NORMALIZATION),
    ).write(folder / "model.yaml")
    return folder


def bicubic(image: np.ndarray, scale: int = 4) -> np.ndarray:
    """torch's bicubic upsampling (what the identity model computes), in float64, any units."""
    x = torch.from_numpy(np.asarray(image, np.float64))[None, None]
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)[0, 0].numpy()


def physical(shape, low: float = -1000.0, high: float = 3000.0, seed: int = 0) -> np.ndarray:
    """A smooth image in physical units with a few values far outside its percentile range."""
    from scipy.ndimage import gaussian_filter

    image = gaussian_filter(np.random.default_rng(seed).random(shape), 2.0)
    image = low + (high - low) * (image - image.min()) / (image.max() - image.min())
    image[1, 1], image[-2, -3] = low - 500, high + 800
    return image
