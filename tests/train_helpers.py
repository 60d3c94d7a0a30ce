"""Training helpers the training tests share: a generated split, the job the train rule would give, the tiny
two-stage settings (SRGAN-like and ESRGAN-like) that test_train.py resumes after kills."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
from conftest import TINY_NORMALIZATION, tiny_settings
from scipy.ndimage import gaussian_filter

from scisr.io.files import write_png16
from scisr.prepare.resize import imresize
from scisr.train import Settings, TrainJob, train

# the rule's settings: the tiny setup with 30 + 10 iterations, the schema's defaults for the other keys (ema 0.999,
# no clipping, bce, ...)
SETTINGS = tiny_settings(
    {
        "generator": {"batch_norm": False},
        "pixel_loss": "l1",
        "pixel": {"iterations": 30, "lr": 5e-4, "milestones": [20], "gamma": 0.5},
        "gan": {"iterations": 10, "lr": 1e-4, "adv_weight": 5e-3, "pixel_weight": 1.0, "milestones": [], "gamma": 0.5},
    }
)
NORMALIZATION = TINY_NORMALIZATION
# the papers' additions, all on: EMA, relativistic GAN, gradient clipping; the kill lands mid-GAN-stage
ESRGAN = copy.deepcopy(SETTINGS) | {"ema": 0.9, "grad_clip": 10.0, "amp": "auto"}
ESRGAN["pixel"] = {"iterations": 20, "lr": 5e-4, "milestones": [10], "gamma": 0.5}
ESRGAN["gan"] = ESRGAN["gan"] | {"iterations": 20, "loss": "ragan", "milestones": [5]}


def job(split: Path, out: Path, ckpt: Path, settings: dict, name: str = "tiny", **where) -> TrainJob:
    """The job the train rule would give for a model folder `out` (generator.pt, history.tsv, model.yaml)."""
    return TrainJob(
        train_dir=split / "train",
        val_dir=split / "val",
        generator=out / "generator.pt",
        history=out / "history.tsv",
        card=out / "model.yaml",
        checkpoint_dir=ckpt,
        settings=Settings.from_dict(settings),
        name=name,
        dataset="tiny_data",
        normalization=NORMALIZATION,
        **({"device": "cpu", "threads": 1} | where),
    )


def fit(split: Path, out: Path, ckpt: Path, settings: dict, name: str = "tiny", **where) -> None:
    """Train through the one entry point."""
    train(job(split, Path(out), Path(ckpt), settings, name, **where))


def make_split(root: Path, size: int = 64, scale: int = 4, n_train: int = 6, n_val: int = 2) -> Path:
    """A split folder of smooth random HR images and their bicubic LR partners."""
    rng = np.random.default_rng(1)
    for split, count in [("train", n_train), ("val", n_val)]:
        for i in range(count):
            hr = gaussian_filter(rng.random((size, size)), 2.0)
            hr = (hr - hr.min()) / (hr.max() - hr.min())
            write_png16(root / split / "HR" / f"im{i:02d}.png", hr)
            write_png16(root / split / "LR" / f"im{i:02d}.png", np.clip(imresize(hr, 1 / scale), 0, 1))
    return root
