"""Upscale a folder of LR images with bicubic or a trained generator, tile by tile with blended seams."""

from __future__ import annotations

import logging
import math
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

log = logging.getLogger(__name__)



def load_model(generator: str | os.PathLike, card: str | os.PathLike | ModelCard,
               device: str | torch.device, data_channels: int | None = None) -> nn.Module:
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


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of `tile`-long tiles covering `length`; neighbours overlap by at least `overlap`."""
    if length <= tile:
        return [0]
    return list(range(0, length - tile, tile - overlap)) + [length - tile]


def blend_window(length: int, scale: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """1-D weights over one tile axis in output pixels: a cosine ramp across the middle half of the overlap.

    The weight is zero within overlap/4 LR pixels of an inner tile edge, so where the network's receptive
    field radius is at most overlap/4, blended tiles equal whole-image inference. Image borders
    (`first`, `last`) get full weight.
    """
    d = (np.arange(length * scale) + 0.5) / scale  # distance from the tile's start, in LR pixels
    if overlap == 0:
        return np.ones_like(d)
    margin = overlap / 4

    def ramp(x: np.ndarray) -> np.ndarray:
        t = np.clip((x - margin) / (overlap - 2 * margin), 0.0, 1.0)
        return 0.5 - 0.5 * np.cos(math.pi * t)

    return (np.ones_like(d) if first else ramp(d)) * (np.ones_like(d) if last else ramp(length - d))


@torch.inference_mode()
def upscale(
    model: nn.Module,
    image: np.ndarray,
    scale: int,
    tile: int,
    overlap: int,
    device: str | torch.device,
) -> np.ndarray:
    """Upscale a (H, W) or (C, H, W) image in overlapping LR tiles of `tile` px; float32, unclipped."""
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap {overlap}, tile {tile}")
    array = np.asarray(image, dtype=np.float32)
    chw = array if array.ndim == 3 else array[None]
    channels, height, width = chw.shape
    dev = torch.device(device)
    memory_format = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    source = torch.from_numpy(np.ascontiguousarray(chw))[None]
    out = np.zeros((channels, height * scale, width * scale), dtype=np.float64)
    weight = np.zeros((height * scale, width * scale), dtype=np.float64)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    for y in ys:
        th = min(tile, height)
        wy = blend_window(th, scale, overlap, y == 0, y + th == height)
        for x in xs:
            tw = min(tile, width)
            wx = blend_window(tw, scale, overlap, x == 0, x + tw == width)
            patch = source[..., y : y + th, x : x + tw].to(dev).contiguous(memory_format=memory_format)
            result = model(patch)[0].float().cpu().numpy()
            w = np.outer(wy, wx)
            region = np.s_[y * scale : (y + th) * scale, x * scale : (x + tw) * scale]
            out[(slice(None), *region)] += result * w
            weight[region] += w
    out = (out / weight).astype(np.float32)
    return out if array.ndim == 3 else out[0]


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
        raise ValueError(f"infer {lr_dir}: give both generator ({generator}) and card ({card}), or neither "
                         "for bicubic")
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
