"""Training pairs and seeded random patch batches with dihedral augmentation.

Training reads its pairs from a `scisr.prepare.store.PairStore` (a patch at a time, so memory does not grow
with the data). `PairedImages` (`load_pairs`) holds a part's pairs in memory instead, for small sets and
benchmarks; both give float32 arrays in the same order and with the same values, so the same seed samples
bit-identical batches from either (tests/test_train_data.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from scisr.prepare.store import PairStore, check_shapes, content_key, pair_paths, read_u16, to_float

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairedImages:
    """HR and LR images of one split folder held in memory, as float32 (H, W) arrays in [0, 1]."""

    names: list[str]
    hr: list[np.ndarray]
    lr: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.names)

    def lr_shape(self, i: int) -> tuple[int, int]:
        return tuple(self.lr[i].shape)

    def hr_shape(self, i: int) -> tuple[int, int]:
        return tuple(self.hr[i].shape)

    def image(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Pair i as (LR, HR)."""
        return self.lr[i], self.hr[i]

    def patch(self, i: int, y: int, x: int, size: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
        """The LR patch of `size` px at (y, x) of pair i and its HR partner."""
        return (
            self.lr[i][y : y + size, x : x + size],
            self.hr[i][y * scale : (y + size) * scale, x * scale : (x + size) * scale],
        )


def load_pairs(folder: str | os.PathLike, scale: int) -> PairedImages:
    """Read the HR PNGs of split part `folder` and their LR partners into memory, checking LR is exactly HR / scale.

    Pairs are held in the order of their pixels' sha256, not of their file names: names are keyed
    pseudonyms (another installation's secret renames them), and the patch sampler draws images by
    position, so ordering by name would make the same data and seed train differently elsewhere.
    """
    names, hr, lr, keys = [], [], [], []
    for hr_path, lr_path in pair_paths(folder, scale):
        hr_u16, lr_u16 = read_u16(hr_path), read_u16(lr_path)
        check_shapes(lr_path, hr_u16.shape, lr_u16.shape, scale)
        names.append(hr_path.name)
        keys.append(content_key(hr_u16, lr_u16))
        hr.append(to_float(hr_u16))
        lr.append(to_float(lr_u16))
    order = sorted(range(len(names)), key=lambda i: (keys[i], names[i]))
    return PairedImages([names[i] for i in order], [hr[i] for i in order], [lr[i] for i in order])


def dihedral(image: torch.Tensor, k: int) -> torch.Tensor:
    """Apply one of the 8 dihedral transforms (k in 0..7: k % 4 quarter turns, then a flip if k >= 4)."""
    image = torch.rot90(image, k % 4, dims=(-2, -1))
    return torch.flip(image, dims=(-1,)) if k >= 4 else image


class PatchSampler:
    """Random aligned (LR, HR) patch batches drawn from a seeded torch.Generator (from a store or from memory)."""

    def __init__(self, pairs: PairedImages | PairStore, scale: int, patch_size: int, seed: int) -> None:
        if patch_size % scale:
            raise ValueError(f"patch_size {patch_size} must be a multiple of the scale {scale}")
        smallest = min(min(pairs.hr_shape(i)) for i in range(len(pairs)))
        if patch_size > smallest:
            log.warning(
                "patch_size %d is larger than the smallest training image (%d px); using %d",
                patch_size,
                smallest,
                smallest - smallest % scale,
            )
            patch_size = smallest - smallest % scale
        self.pairs = pairs
        self.scale = scale
        self.patch_size = patch_size
        self.generator = torch.Generator().manual_seed(seed)

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self.generator))

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of LR (B, 1, p/s, p/s) and HR (B, 1, p, p) patches, augmented identically."""
        p_lr = self.patch_size // self.scale
        lr_batch, hr_batch = [], []
        for _ in range(batch_size):
            i = self._randint(len(self.pairs))
            height, width = self.pairs.lr_shape(i)
            y = self._randint(height - p_lr + 1)
            x = self._randint(width - p_lr + 1)
            k = self._randint(8)
            lr, hr = self.pairs.patch(i, y, x, p_lr, self.scale)
            lr_batch.append(dihedral(torch.from_numpy(np.ascontiguousarray(lr))[None], k))
            hr_batch.append(dihedral(torch.from_numpy(np.ascontiguousarray(hr))[None], k))
        return torch.stack(lr_batch), torch.stack(hr_batch)

    def state(self) -> torch.Tensor:
        """The generator's RNG state (a uint8 tensor, safe for weights_only checkpoints)."""
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        """Restore an RNG state from `state()`."""
        self.generator.set_state(state)
