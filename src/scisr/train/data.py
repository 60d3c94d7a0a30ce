"""Paired HR/LR images held in memory, and seeded random patch batches with dihedral augmentation."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass

import torch

from scisr.io.files import read_png16
from scisr.prepare.split import pair_dirs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairedImages:
    """HR and LR images of one split folder, as float32 (1, H, W) tensors in [0, 1]."""

    names: list[str]
    hr: list[torch.Tensor]
    lr: list[torch.Tensor]


def load_pairs(folder: str | os.PathLike, scale: int) -> PairedImages:
    """Read the HR PNGs of split part `folder` and their LR partners, checking that LR is exactly HR / scale.

    Pairs are held in the order of their pixels' sha256, not of their file names: names are keyed
    pseudonyms (another installation's secret renames them), and the patch sampler draws images by
    position, so ordering by name would make the same data and seed train differently elsewhere.
    """
    hr_dir, lr_dir = pair_dirs(folder)
    hr_paths = sorted(hr_dir.glob("*.png"))
    if not hr_paths:
        raise FileNotFoundError(f"{hr_dir}: no PNG images")
    names, hr, lr = [], [], []
    for hr_path in hr_paths:
        lr_path = lr_dir / hr_path.name
        if not lr_path.is_file():
            raise FileNotFoundError(f"{lr_path}: missing LR partner of {hr_path}")
        hr_image, lr_image = read_png16(hr_path), read_png16(lr_path)
        expected = (hr_image.shape[0] // scale, hr_image.shape[1] // scale)
        if hr_image.shape[0] % scale or hr_image.shape[1] % scale or lr_image.shape != expected:
            raise ValueError(
                f"{lr_path}: LR shape {lr_image.shape} is not HR shape {hr_image.shape} / scale {scale}"
            )
        names.append(hr_path.name)
        hr.append(torch.from_numpy(hr_image)[None])
        lr.append(torch.from_numpy(lr_image)[None])
    keys = [hashlib.sha256(h.numpy().tobytes() + lo.numpy().tobytes()).hexdigest() for h, lo in zip(hr, lr)]
    order = sorted(range(len(names)), key=lambda i: (keys[i], names[i]))
    return PairedImages([names[i] for i in order], [hr[i] for i in order], [lr[i] for i in order])


def dihedral(image: torch.Tensor, k: int) -> torch.Tensor:
    """Apply one of the 8 dihedral transforms (k in 0..7: k % 4 quarter turns, then a flip if k >= 4)."""
    image = torch.rot90(image, k % 4, dims=(-2, -1))
    return torch.flip(image, dims=(-1,)) if k >= 4 else image


class PatchSampler:
    """Random aligned (LR, HR) patch batches drawn from a seeded torch.Generator."""

    def __init__(self, pairs: PairedImages, scale: int, patch_size: int, seed: int) -> None:
        if patch_size % scale:
            raise ValueError(f"patch_size {patch_size} must be a multiple of the scale {scale}")
        smallest = min(min(image.shape[-2:]) for image in pairs.hr)
        if patch_size > smallest:
            log.warning(
                "patch_size %d is larger than the smallest training image (%d px); using %d",
                patch_size, smallest, smallest - smallest % scale,
            )
            patch_size = smallest - smallest % scale
        self.pairs = pairs
        self.scale = scale
        self.patch_size = patch_size
        self.generator = torch.Generator().manual_seed(seed)

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of LR (B, C, p/s, p/s) and HR (B, C, p, p) patches, augmented identically."""
        p_lr = self.patch_size // self.scale
        lr_batch, hr_batch = [], []
        for _ in range(batch_size):
            i = self._randint(len(self.pairs.hr))
            lr, hr = self.pairs.lr[i], self.pairs.hr[i]
            y = self._randint(lr.shape[-2] - p_lr + 1)
            x = self._randint(lr.shape[-1] - p_lr + 1)
            k = self._randint(8)
            s = self.scale
            lr_batch.append(dihedral(lr[:, y : y + p_lr, x : x + p_lr], k))
            hr_batch.append(dihedral(hr[:, y * s : (y + p_lr) * s, x * s : (x + p_lr) * s], k))
        return torch.stack(lr_batch), torch.stack(hr_batch)

    def state(self) -> torch.Tensor:
        """The generator's RNG state (a uint8 tensor, safe for weights_only checkpoints)."""
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Restore an RNG state from `state()`."""
        self.generator.set_state(state)
