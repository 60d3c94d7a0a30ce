"""Seconds per training step of the published generators, by execution mode.

Runs SciSR's own trainer (scisr.train.trainer.Trainer) on synthetic 16-bit images for SRResNet (16 blocks x
64 channels, Ledig et al.) and RRDBNet (23 RRDB, ESRGAN) with SRGAN's discriminator, batch 16,
96-pixel HR patches, x4, and times the pixel-loss step and the GAN step in each mode:

  eager           fp32, contiguous (NCHW) tensors
  channels_last   fp32, NHWC memory format (what the trainer uses)
  compile         channels_last + torch.compile of generator and discriminator
  bf16            channels_last + bf16 autocast (CUDA only: 10-100x slower on CPUs without bf16)

Prints a table with each mode's speed-up over eager (eager seconds / mode seconds; >1 is faster). Usage:
  .venv/bin/python bench/train_step.py [--models srresnet rrdbnet] [--steps 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from scisr.io.files import write_png16
from scisr.prepare.resize import imresize
from scisr.prepare.split import pair_dirs
from scisr.train.settings import Settings
from scisr.train.trainer import Trainer

GENERATORS = {
    "srresnet": {"arch": "srresnet", "channels": 64, "blocks": 16, "global_skip": False},
    "rrdbnet": {"arch": "rrdbnet", "channels": 64, "blocks": 23, "growth": 32},
}


def synthetic_split(root: Path, scale: int = 4, size: int = 192, count: int = 8) -> Path:
    """A train/val split of smooth random 16-bit images (content does not change the step time)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", count), ("val", 1)):
        for i in range(n):
            hr = gaussian_filter(rng.random((size, size)), 2.0)
            hr = (hr - hr.min()) / (hr.max() - hr.min())
            hr_dir, lr_dir = pair_dirs(root / split)
            write_png16(hr_dir / f"{i}.png", hr)
            write_png16(lr_dir / f"{i}.png", np.clip(imresize(hr, 1 / scale), 0, 1))
    return root


def settings(generator: dict, amp: str) -> dict:
    """The study's full-scale training settings (config/study.yaml) for one generator."""
    return {
        "seed": 0, "scale": 4, "generator": generator,
        "discriminator": {"arch": "vgg", "base_channels": 64, "pool": 6},
        "batch_size": 16, "gpus": 1, "patch_size": 96, "pixel_loss": "l1",
        "pixel": {"iterations": 1, "lr": 1e-4, "milestones": [], "gamma": 0.5},
        "gan": {"iterations": 1, "lr": 1e-4, "adv_weight": 1e-3, "pixel_weight": 1.0, "milestones": [],
                "gamma": 0.5, "loss": "bce"},
        "perceptual": {"weight": 0.0, "weights_file": None, "sha256": None, "layer": "conv5_4"},
        "val_every": 10**9, "checkpoint_every": 10**9, "ema": 0.999, "grad_clip": None, "amp": amp,
    }


def time_steps(trainer: Trainer, stage_index: int, steps: int) -> float:
    """Median seconds of `steps` training steps of one stage, after one warm-up step."""
    stage = trainer.cfg.stages[stage_index]
    trainer.setup_stage(stage, 0)
    step = trainer.step
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    step(stage)  # warm-up (and compilation)
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        step(stage)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(model: str, mode: str, split: Path, device: torch.device, steps: int) -> tuple[float, float]:
    """(pixel step, GAN step) seconds of one generator in one mode."""
    cfg = Settings.from_dict(settings(GENERATORS[model], "auto" if mode == "bf16" else "off"))
    with tempfile.TemporaryDirectory() as ckpt:
        trainer = Trainer(split / "train", split / "val", Path(ckpt), cfg, "bench", device, model)
        if mode == "eager":
            trainer.memory_format = torch.contiguous_format
            trainer.generator.to(memory_format=torch.contiguous_format)
            trainer.discriminator.to(memory_format=torch.contiguous_format)
        if mode == "compile":
            trainer.generator = torch.compile(trainer.generator)
            trainer.discriminator = torch.compile(trainer.discriminator)
        return time_steps(trainer, 0, steps), time_steps(trainer, 1, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(GENERATORS), choices=list(GENERATORS))
    parser.add_argument("--modes", nargs="+", default=None, help="default: eager channels_last compile (+ bf16 on CUDA)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    modes = args.modes or ["eager", "channels_last", "compile"] + (["bf16"] if device.type == "cuda" else [])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"# torch {torch.__version__}, {name}; batch 16, 96-px HR patches, x4; median of {args.steps} steps")
    print(f"{'generator':<10} {'mode':<14} {'pixel s/step':>13} {'speed-up':>8} {'GAN s/step':>11} {'speed-up':>8}")
    with tempfile.TemporaryDirectory() as root:
        split = synthetic_split(Path(root))
        for model in args.models:
            base = None
            for mode in modes:
                try:
                    pixel, gan = measure(model, mode, split, device, args.steps)
                except Exception as error:  # e.g. torch.compile without a C++ compiler
                    print(f"{model:<10} {mode:<14} failed: {type(error).__name__}: {str(error)[:80]}")
                    continue
                base = base or (pixel, gan)
                print(f"{model:<10} {mode:<14} {pixel:>13.3f} {base[0] / pixel:>7.2f}x {gan:>11.3f} "
                      f"{base[1] / gan:>7.2f}x", flush=True)


if __name__ == "__main__":
    main()
