"""Upscale a folder of LR images with bicubic or a trained generator, tile by tile with blended seams."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from scisr.io.files import read_png16, remove_stale, write_png16
from scisr.models import build_generator
from scisr.prepare.resize import imresize
from scisr.tiling import upscale_tiled
from scisr.models.device import resolve_device

log = logging.getLogger(__name__)

BICUBIC = "bicubic"


def read_card(model_dir: str | os.PathLike) -> dict:
    """The model card (model.yaml) of a trained model folder."""
    path = Path(model_dir) / "model.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model card; is {model_dir} a trained model folder?")
    return yaml.safe_load(path.read_text())


def load_model(model_dir: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """The generator of a model folder: built from model.yaml, strict generator.pt weights, eval mode."""
    card = read_card(model_dir)
    dev = resolve_device(str(device))
    model = build_generator(card["arch"], **card["args"])
    state = torch.load(Path(model_dir) / "generator.pt", map_location=dev, weights_only=True)
    model.load_state_dict(state, strict=True)
    memory_format = torch.channels_last if dev.type == "cpu" else torch.contiguous_format
    return model.to(dev, memory_format=memory_format).eval()


def upscale(
    model: nn.Module,
    image: np.ndarray,
    scale: int,
    tile: int = 256,
    overlap: int | None = 32,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Upscale a (H, W) or (C, H, W) image in blended LR tiles of at most `tile` px; float32, unclipped.

    Delegates to `scisr.tiling.upscale_tiled` (fewest tiles, partition-of-unity blending); overlap None
    derives it from the model's receptive field.
    """
    if overlap is not None and not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap {overlap}, tile {tile}")
    return upscale_tiled(model, image, scale, tile=tile, overlap=overlap, device=device)


def infer_folder(
    model: str | os.PathLike,
    lr_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    scale: int,
    tile: int = 256,
    overlap: int = 32,
    device: str = "cpu",
    threads: int = 1,
) -> None:
    """Write out_dir/<name>.png (16-bit, LR size x scale) for each LR PNG with "bicubic" or a model folder."""
    lr_dir, out_dir = Path(lr_dir), Path(out_dir)
    lr_paths = sorted(lr_dir.glob("*.png"))
    if not lr_paths:
        raise FileNotFoundError(f"{lr_dir}: no PNG images to upscale")
    torch.set_num_threads(threads)
    if isinstance(model, str) and model == BICUBIC:
        def run(image: np.ndarray) -> np.ndarray:
            return imresize(image, scale)
    else:
        card = read_card(model)
        if int(card["scale"]) != scale:
            raise ValueError(f"{model}: the model upscales x{card['scale']}, but scale {scale} was asked for")
        dev = resolve_device(device)
        net = load_model(model, dev)

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
