"""Upscale a folder of LR images with bicubic or a trained generator, tile by tile with blended seams."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from scisr.card import ModelCard
from scisr.io.files import read_png16, remove_stale, write_png16
from scisr.models import adapt_channels, build_generator
from scisr.models.device import resolve_device
from scisr.prepare.resize import imresize
from scisr.tiling import upscale_tiled

log = logging.getLogger(__name__)


def load_model(
    generator: str | os.PathLike,
    card: str | os.PathLike | ModelCard,
    device: str | torch.device,
    data_channels: int | None = None,
) -> nn.Module:
    """A generator built from its model card (model.yaml, or a card read already) with strict generator.pt
    weights, in eval mode on `device`; wrapped in a ChannelAdapter when it takes other channels than
    `data_channels` (a 3-channel network on single-channel data; None: as it is)."""
    if not isinstance(card, ModelCard):
        card = ModelCard.read(card)
    dev = resolve_device(str(device))
    with torch.device("meta"):  # no random initialisation: every parameter comes from generator.pt
        model = build_generator(card.arch, **card.args)
    state = torch.load(Path(generator), map_location=dev, weights_only=True)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise RuntimeError(f"{generator}: weights do not fit the model card's {card.arch} ({error})") from None
    if data_channels is not None:
        model = adapt_channels(model, data_channels)
    memory_format = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    return model.to(dev, memory_format=memory_format).eval()


def upscale(
    model: nn.Module,
    image: np.ndarray,
    scale: int,
    tile: int,
    overlap: int | None,
    device: str | torch.device,
) -> np.ndarray:
    """Upscale a (H, W) or (C, H, W) image in blended LR tiles of at most `tile` px; float32, unclipped.

    Delegates to `scisr.tiling.upscale_tiled` (fewest tiles, partition-of-unity blending); overlap None
    derives it from the model's receptive field.
    """
    if overlap is not None and not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap {overlap}, tile {tile}")
    return upscale_tiled(model, image, scale, tile=tile, overlap=overlap, device=device)


def infer_folder(
    lr_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    generator: str | os.PathLike | None,
    card: str | os.PathLike | None,
    scale: int,
    tile: int,
    overlap: int,
    device: str,
    threads: int,
) -> None:
    """Write out_dir/<name>.png (16-bit, LR size x scale) for each LR PNG, upscaled by a trained generator
    (its generator.pt and model.yaml) or, when both are None, by bicubic interpolation (the baseline)."""
    lr_dir, out_dir = Path(lr_dir), Path(out_dir)
    lr_paths = sorted(lr_dir.glob("*.png"))
    if not lr_paths:
        raise FileNotFoundError(f"{lr_dir}: no PNG images to upscale")
    if (generator is None) != (card is None):
        raise ValueError(f"infer {lr_dir}: give both generator ({generator}) and card ({card}), or neither for bicubic")
    torch.set_num_threads(threads)
    if generator is None:

        def run(image: np.ndarray) -> np.ndarray:
            return imresize(image, scale)
    else:
        model_card = ModelCard.read(card)
        if model_card.scale != scale:
            raise ValueError(f"{card}: the model upscales x{model_card.scale}, but scale {scale} was asked for")
        dev = resolve_device(device)
        # the data's channels: the LR PNGs are single-channel (16-bit grayscale, read_png16)
        net = load_model(generator, model_card, dev, data_channels=1)

        def run(image: np.ndarray) -> np.ndarray:
            return upscale(net, image, scale, tile, overlap, dev)

    out_dir.mkdir(parents=True, exist_ok=True)
    for path in tqdm(lr_paths, desc=f"upscale {lr_dir}", file=sys.stderr, mininterval=5.0, ascii=True):
        image = read_png16(path)
        result = run(image)
        expected = (image.shape[0] * scale, image.shape[1] * scale)
        if result.shape != expected:
            raise RuntimeError(f"{path}: output shape {result.shape}, expected {expected}")
        write_png16(out_dir / path.name, np.clip(result, 0.0, 1.0))
    for stale in remove_stale(out_dir, "*.png", {path.name for path in lr_paths}):
        log.info("removed stale %s", stale)
