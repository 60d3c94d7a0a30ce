"""The budget crossover's scores: each snapshot of one training run upscaled and scored on one test set.

One process per model and test set instead of an infer and a score job per snapshot (a job costs a Python
start and a torch import, seconds against milliseconds of work on a default-study test set). The
predictions go through `scisr.infer.infer_folder` into a temporary folder and are scored by
`scisr.metrics.score_folder`, the score table's one writer, so a snapshot's scores are exactly those the
infer and score phases would give the same weights.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from scisr.infer import infer_folder
from scisr.metrics import score_folder

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
    with tempfile.TemporaryDirectory(prefix="scisr-budget-") as tmp:
        for i, (generator, out) in enumerate(zip(generators, outputs, strict=True)):
            predictions = Path(tmp) / str(i)
            infer_folder(lr_dir, predictions, generator=generator, card=card, scale=scale, tile=tile,
                         overlap=overlap, device=device, threads=threads)
            table = score_folder(predictions, hr_dir, out, border=border)
            log.info("snapshot %d of %d: mean RMSE %.5f over %d test image(s)", i + 1, len(generators),
                     table["rmse"].mean(), len(table))
