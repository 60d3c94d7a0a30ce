"""The budget crossover's scores: each snapshot of one training run upscaled and scored on one test set.

One process per model and test set instead of an infer and a score job per snapshot (a job costs a Python
start and a torch import, seconds against milliseconds of work on a default-study test set), and the test
set is read once for all snapshots: each snapshot's predictions are what `scisr.infer.infer_folder` would
write (the same model loading, tiling and clipping, quantized to 16 bits as its PNGs are:
`scisr.io.files.as_png16`), scored by `scisr.metrics.score_images` and written by `write_scores`, the score
table's writer, so a snapshot's scores are exactly those the infer and score phases would give it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from scisr.card import ModelCard
from scisr.infer import load_model, upscale
from scisr.io.files import as_png16, read_png16
from scisr.metrics import score_images, write_scores
from scisr.models.device import resolve_device

log = logging.getLogger(__name__)


def score_snapshots(
    generators: list[str | os.PathLike],
    card: str | os.PathLike,
    lr_dir: str | os.PathLike,
    hr_dir: str | os.PathLike,
    outputs: list[str | os.PathLike],
    *,
    scale: int,
    tile: int,
    overlap: int,
    device: str,
    threads: int,
    border: int,
) -> None:
    """Write outputs[i] (image_id, rmse, psnr, ssim) for snapshot generators[i], all sharing one model card."""
    if len(generators) != len(outputs):
        raise ValueError(f"{len(generators)} budget snapshots but {len(outputs)} score tables to write")
    hr_paths = sorted(Path(hr_dir).glob("*.png"))
    if not hr_paths:
        raise FileNotFoundError(f"{hr_dir}: no HR PNGs to score")
    missing = [p.name for p in hr_paths if not (Path(lr_dir) / p.name).is_file()]
    if missing:
        raise FileNotFoundError(f"{lr_dir}: no LR partner of {', '.join(missing[:10])}")
    images = [(p.stem, read_png16(Path(lr_dir) / p.name), read_png16(p)) for p in hr_paths]  # read once
    torch.set_num_threads(threads)
    model_card = ModelCard.read(card)
    if model_card.scale != scale:
        raise ValueError(f"{card}: the model upscales x{model_card.scale}, but scale {scale} was asked for")
    dev = resolve_device(device)
    for i, (generator, out) in enumerate(zip(generators, outputs, strict=True)):
        net = load_model(generator, model_card, dev, data_channels=1)
        table = score_images(
            (
                (name, as_png16(np.clip(upscale(net, lr, scale, tile, overlap, dev), 0.0, 1.0)), hr)
                for name, lr, hr in images
            ),
            border=border,
        )
        write_scores(table, out)
        log.info(
            "snapshot %d of %d: mean RMSE %.5f over %d test image(s)",
            i + 1,
            len(generators),
            table["rmse"].mean(),
            len(table),
        )
