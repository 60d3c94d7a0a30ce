"""Two-stage SRGAN/ESRGAN training: pixel-loss pretraining, then adversarial + pixel (+ perceptual) loss.

Settings (a dict validated by the workflow's schema; keys marked "optional" fall back to the default shown):

    seed             int     seeds model initialisation (torch) and patch sampling (a torch.Generator)
    scale            int     2, 4 or 8; LR images are exactly HR / scale
    generator        dict    {"arch": <name in scisr.models.GENERATORS>, **builder arguments}, e.g.
                             {"arch": "srresnet", "channels": 32, "blocks": 4, "batch_norm": false};
                             in_channels, out_channels and scale are filled in from the data and `scale`
    discriminator    dict    {"arch": <name in scisr.models.DISCRIMINATORS>, **builder arguments}, e.g.
                             {"arch": "vgg", "base_channels": 32, "pool": 1}; in_channels is filled in
    batch_size       int     patches per iteration: the global batch, split evenly over the `gpus` processes
    gpus             int     optional, default 1: data-parallel processes (DistributedDataParallel through
                             torchrun, one GPU each on CUDA; see `run_training` and scisr.train.distributed).
                             batch_size must be a multiple of it; each process draws batch_size / gpus patches
                             from its own stream (seed + rank) and the gradients are averaged, so a step sees
                             the same number of patches whatever the process count
    patch_size       int     HR patch side in pixels, a multiple of `scale` (clamped to the smallest image)
    pixel_loss       str     name in scisr.train.losses.PIXEL_LOSSES: "l1" or "mse" ("l2" = "mse")
    pixel            dict    stage 1: {"iterations", "lr", "milestones", "gamma"}: Adam at "lr", multiplied by
                             "gamma" after each milestone (counted in iterations of this stage)
    gan              dict    stage 2: {"iterations" (0 skips the stage), "lr", "adv_weight", "pixel_weight",
                             "milestones", "gamma", "loss" (optional, default "bce")}; "loss" is a name in
                             scisr.train.losses.ADVERSARIAL_LOSSES: "bce" (standard GAN, SRGAN) or "ragan"
                             (relativistic average GAN, ESRGAN)
    val_every        int     validate on the whole val set every this many (global) iterations
    checkpoint_every int     save checkpoint_dir/last.pt every this many (global) iterations
    ema              float   optional, default 0.999: decay of an exponential moving average of the generator's
                             weights, updated after every generator step of both stages; the average is what
                             is validated and exported to generator.pt. 0 disables it (the raw weights are
                             used). It lags by about 1 / (1 - ema) iterations: at 0.999 the initial weights
                             still make up 0.999**1200 = 30% of the average after 1200 iterations, so short
                             runs want a smaller decay (0.99: 100 iterations of lag)
    grad_clip        float   optional, default null: clip the gradient norm of the generator and (separately)
                             of the discriminator to this maximum before each step; null or 0 = no clipping.
                             A warning is logged when more than half the steps of a validation interval clip
    amp              str     optional, default "auto": "auto" = bf16 autocast on CUDA when the GPU supports
                             bf16, fp32 on CPU (bf16 was measured 10-100x slower there); "off" = fp32 always
                             (YAML's unquoted `off`, read as false, counts as "off")
    perceptual       dict    optional: perceptual loss of the GAN stage (ESRGAN), L1 between VGG19 features
                             before activation; its keys, each optional:
                             weight        float  default 0.0: weight in the generator loss; 0 = not used
                             weights_file  str    default null: a torchvision vgg19 state dict (.pth, read with
                                                  torch.load(weights_only=True)); required when weight > 0
                             sha256        str    default null: expected sha256 of weights_file, checked first
                             layer         str    default "conv5_4": one of conv1_2, conv2_2, conv3_4, conv4_4,
                                                  conv5_4 (any convB_N of VGG19 is accepted)

Both stages use Adam (betas 0.9, 0.999, as SRGAN and ESRGAN) and a multistep learning-rate decay; the GAN
stage starts fresh optimizers from the pretrained generator (the EMA carries on across stages). Generator
loss of the GAN stage: pixel_weight * pixel + adv_weight * adversarial + perceptual.weight * perceptual.
Validation also runs at the end of each stage. Networks run in channels_last memory format. A checkpoint
resumes only when it was written for the same settings (gpus included: another process count is another
optimisation), the same training data (HR and LR bytes), the same VGG19 weights file and the same checkpoint
format. `check_settings` checks a settings dict without building anything, for config validation.

`run_training` is the entry point of the train rule: `train_model` in this process when gpus is 1, else gpus
DistributedDataParallel processes launched with torchrun (scisr.train.distributed), each one a `_Trainer`
of rank r. A distributed checkpoint stores every process's patch-sampler state, so all processes resume from
the same checkpoint and a resumed run repeats the uninterrupted one (checked bit for bit with 2 CPU processes).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import scisr
from scisr.io.files import atomic_path, write_text_atomic
from scisr.metrics import psnr, rmse, ssim
from scisr.models import build_discriminator, build_generator, count_parameters, generator_arguments
from scisr.models.device import resolve_device
from scisr.models.vgg import LAYERS
from scisr.train import losses
from scisr.train.checkpoint import load_checkpoint, save_checkpoint, settings_hash
from scisr.train.data import PatchSampler, folder_sha256, load_pairs
from scisr.train.ema import EMA

log = logging.getLogger(__name__)

HISTORY_COLUMNS = [
    "iteration", "stage", "loss_pixel", "loss_adv", "loss_perceptual", "loss_d", "val_rmse", "val_psnr",
    "val_ssim", "lr", "seconds",
]
CHECKPOINT_NAME = "last.pt"
ADAM_BETAS = (0.9, 0.999)  # SRGAN and ESRGAN
AMP_MODES = ("auto", "off")
VGG19_HINT = (
    "give the path of a torchvision vgg19 state dict (a .pth file such as vgg19-dcbb9e9d.pth, as saved by "
    "torch.save(torchvision.models.vgg19(weights='IMAGENET1K_V1').state_dict(), path); nothing is downloaded)"
)


def _require(mapping: dict, key: str, where: str = ""):
    try:
        return mapping[key]
    except KeyError:
        raise KeyError(f"training settings: missing key '{where}{key}'") from None


def _known(value: str, table, key: str) -> str:
    if value not in table:
        raise ValueError(f"training settings: {key} is {value!r}; known: {', '.join(sorted(table))}")
    return value


def _amp_mode(value) -> str:
    """The `amp` setting as a string: YAML 1.1 reads an unquoted `amp: off` as false."""
    if value is None:
        return "auto"
    return "off" if value is False else str(value)


@dataclass(frozen=True)
class StageSettings:
    """One training stage's schedule and loss weights."""

    name: str
    iterations: int
    lr: float
    milestones: list[int]
    gamma: float
    pixel_weight: float = 1.0
    adv_weight: float = 0.0
    adversarial_loss: str = "bce"


@dataclass(frozen=True)
class PerceptualSettings:
    """The GAN stage's VGG19 perceptual loss; weight 0 means it is not used (nor its file read)."""

    weight: float = 0.0
    weights_file: str | None = None
    sha256: str | None = None
    layer: str = "conv5_4"

    @classmethod
    def from_dict(cls, d: dict | None) -> PerceptualSettings:
        """Read `perceptual` settings, defaults for missing keys; refuse a weight without a weights file."""
        d = dict(d or {})
        unknown = set(d) - {"weight", "weights_file", "sha256", "layer"}
        if unknown:
            names = ", ".join(f"perceptual.{k}" for k in sorted(unknown))
            raise ValueError(f"training settings: unknown key(s) {names}")
        parsed = cls(
            weight=float(d.get("weight") or 0.0),
            weights_file=None if d.get("weights_file") in (None, "") else str(d["weights_file"]),
            sha256=None if d.get("sha256") in (None, "") else str(d["sha256"]).strip().lower(),
            layer=_known(str(d.get("layer") or "conv5_4"), LAYERS, "perceptual.layer"),
        )
        if parsed.weight < 0 or not math.isfinite(parsed.weight):
            raise ValueError(f"training settings: perceptual.weight must be >= 0, got {parsed.weight}")
        if parsed.weight > 0 and parsed.weights_file is None:
            raise ValueError(
                f"training settings: perceptual.weight is {parsed.weight:g} but perceptual.weights_file is not "
                f"set (config key train.perceptual.weights_file, or models.<name>.train.perceptual.weights_file): "
                f"{VGG19_HINT}; or set perceptual.weight: 0"
            )
        return parsed


@dataclass(frozen=True)
class Settings:
    """The training settings dict, checked and typed."""

    seed: int
    scale: int
    generator: dict
    discriminator: dict
    batch_size: int
    patch_size: int
    pixel_loss: str
    stages: list[StageSettings]
    val_every: int
    checkpoint_every: int
    ema: float = 0.999
    grad_clip: float | None = None
    amp: str = "auto"
    perceptual: PerceptualSettings = field(default_factory=PerceptualSettings)
    gpus: int = 1

    @classmethod
    def from_dict(cls, settings: dict) -> Settings:
        """Read a settings dict (see the module docstring), naming any missing key or bad value."""
        pixel, gan = _require(settings, "pixel"), _require(settings, "gan")

        def stage(name: str, d: dict, **extra) -> StageSettings:
            return StageSettings(
                name=name,
                iterations=int(_require(d, "iterations", f"{name}.")),
                lr=float(_require(d, "lr", f"{name}.")),
                milestones=[int(m) for m in _require(d, "milestones", f"{name}.")],
                gamma=float(_require(d, "gamma", f"{name}.")),
                **extra,
            )

        stages = [
            stage("pixel", pixel),
            stage(
                "gan",
                gan,
                pixel_weight=float(_require(gan, "pixel_weight", "gan.")),
                adv_weight=float(_require(gan, "adv_weight", "gan.")),
                adversarial_loss=_known(str(gan.get("loss") or "bce"), losses.ADVERSARIAL_LOSSES, "gan.loss"),
            ),
        ]
        ema = float(settings.get("ema", 0.999) or 0.0)
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"training settings: ema must be in [0, 1) (0 = off), got {ema}")
        grad_clip = settings.get("grad_clip")
        grad_clip = float(grad_clip) if grad_clip else None
        if grad_clip is not None and not grad_clip > 0:
            raise ValueError(f"training settings: grad_clip must be > 0 (null or 0: no clipping), got {grad_clip}")
        parsed = cls(
            seed=int(_require(settings, "seed")),
            scale=int(_require(settings, "scale")),
            generator=dict(_require(settings, "generator")),
            discriminator=dict(_require(settings, "discriminator")),
            batch_size=int(_require(settings, "batch_size")),
            patch_size=int(_require(settings, "patch_size")),
            pixel_loss=_known(str(_require(settings, "pixel_loss")), losses.PIXEL_LOSSES, "pixel_loss"),
            stages=stages,
            val_every=int(_require(settings, "val_every")),
            checkpoint_every=int(_require(settings, "checkpoint_every")),
            ema=ema,
            grad_clip=grad_clip,
            amp=_known(_amp_mode(settings.get("amp")), AMP_MODES, "amp"),
            perceptual=PerceptualSettings.from_dict(settings.get("perceptual")),
            gpus=int(settings.get("gpus", 1)),
        )
        _require(parsed.generator, "arch", "generator.")
        _require(parsed.discriminator, "arch", "discriminator.")
        if sum(s.iterations for s in stages) <= 0:
            raise ValueError("training settings: pixel.iterations + gan.iterations must be positive")
        if parsed.gpus < 1:
            raise ValueError(f"training settings: gpus must be >= 1, got {parsed.gpus}")
        if parsed.batch_size % parsed.gpus:
            raise ValueError(
                f"training settings: batch_size {parsed.batch_size} is not divisible by gpus {parsed.gpus}: "
                f"batch_size is the global batch, split evenly over the {parsed.gpus} processes; make it a "
                f"multiple of {parsed.gpus} (e.g. {parsed.batch_size + parsed.gpus - parsed.batch_size % parsed.gpus})"
            )
        return parsed

    @property
    def uses_perceptual(self) -> bool:
        """Whether training reads the VGG19 weights: a perceptual weight and a GAN stage."""
        return self.perceptual.weight > 0 and self.stages[1].iterations > 0


def check_settings(settings: dict) -> None:
    """Raise KeyError/ValueError naming the key when `settings` cannot train; builds nothing, reads no file."""
    Settings.from_dict(settings)


def perceptual_loss(cfg: Settings) -> losses.PerceptualLoss | None:
    """The VGG19 perceptual loss the settings ask for (weights file checked and read), or None."""
    if not cfg.uses_perceptual:
        return None
    p = cfg.perceptual
    return losses.PerceptualLoss(p.weights_file, layer=p.layer, sha256=p.sha256)


@dataclass
class _Progress:
    """Everything that changes while training, saved in checkpoints."""

    iteration: int = 0
    stage: str = "pixel"
    history: list[dict] = field(default_factory=list)
    sums: dict[str, float] = field(
        # loss sums since the last history row; "clipped" of "steps" optimizer steps had their gradient clipped
        default_factory=lambda: dict.fromkeys(["pixel", "adv", "perceptual", "d", "clipped", "steps"], 0.0)
    )
    count: int = 0
    elapsed: float = 0.0


class _Trainer:
    """One training run: the models, the data, the progress, and the two stages.

    With world_size > 1 this is process `rank` of a DistributedDataParallel run (the process group already
    initialised): it draws batch_size / world_size patches from its own stream (seed + rank), steps through
    DDP wrappers that average the gradients, and reports the losses averaged over the processes, so every
    process holds the same progress. Rank 0 alone validates and writes checkpoints; the others wait at
    barriers. EMA, checkpoints and exports use the unwrapped modules (state-dict keys as single-process);
    batch-norm statistics are rank 0's (DDP hands them to every process at the start of each forward pass).
    """

    def __init__(self, split_dir: Path, checkpoint_dir: Path, cfg: Settings, fingerprint: str,
                 device: torch.device, name: str, perceptual: losses.PerceptualLoss | None = None,
                 *, rank: int = 0, world_size: int = 1) -> None:
        if cfg.uses_perceptual and perceptual is None:
            raise ValueError("training settings ask for a perceptual loss: pass perceptual_loss(cfg)")
        if world_size != cfg.gpus or not 0 <= rank < world_size:
            raise ValueError(f"training settings ask for gpus {cfg.gpus}: got process {rank} of {world_size}")
        self.rank, self.world_size = rank, world_size
        self.is_main = rank == 0
        self.cfg = cfg
        self.device = device
        self.name = name
        self.fingerprint = fingerprint
        self.checkpoint_path = checkpoint_dir / CHECKPOINT_NAME
        self.train = load_pairs(split_dir / "train", cfg.scale)
        self.val = load_pairs(split_dir / "val", cfg.scale)
        channels = self.train.hr[0].shape[0]
        torch.manual_seed(cfg.seed)
        gen_settings = {k: v for k, v in cfg.generator.items() if k != "arch"}
        self.generator_args = generator_arguments(
            cfg.generator["arch"], **{"in_channels": channels, "out_channels": channels, "scale": cfg.scale,
                                      **gen_settings}
        )
        self.generator = build_generator(cfg.generator["arch"], **self.generator_args)
        disc_settings = {k: v for k, v in cfg.discriminator.items() if k != "arch"}
        self.discriminator = build_discriminator(cfg.discriminator["arch"], in_channels=channels,
                                                 **disc_settings)
        # channels_last: measured faster on CPU, and the layout tensor cores want on CUDA
        self.memory_format = torch.channels_last
        self.generator.to(device, memory_format=self.memory_format)
        self.discriminator.to(device, memory_format=self.memory_format)
        self.ema = EMA(self.generator, cfg.ema) if cfg.ema > 0 else None
        # what a training step calls: DDP wrappers (gradients averaged over the processes) or the models themselves
        self.train_generator: nn.Module = self.generator
        self.train_discriminator: nn.Module = self.discriminator
        if world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.train_generator = DistributedDataParallel(self.generator, device_ids=ids)
            self.train_discriminator = DistributedDataParallel(self.discriminator, device_ids=ids)
        self.perceptual = perceptual.to(device, memory_format=self.memory_format) if perceptual else None
        # bf16 autocast only where it pays: CUDA with native bf16 (no GradScaler needed for bf16)
        self.amp_dtype = (
            torch.bfloat16
            if cfg.amp == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
            else None
        )
        self.sampler = PatchSampler(self.train, cfg.scale, cfg.patch_size, cfg.seed + rank)
        self.local_batch = cfg.batch_size // world_size
        self.pixel_loss = losses.pixel_loss(cfg.pixel_loss)
        self.adversarial = losses.adversarial_loss(cfg.stages[1].adversarial_loss)
        self.progress = _Progress()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.resumed: dict | None = None
        self.last_lr = math.nan  # the generator learning rate of the latest iteration
        self.clock = time.perf_counter()  # seconds() = progress.elapsed at start + time since clock
        log.info("training %s on %s: precision %s, channels_last, ema %s, grad_clip %s, gan.loss %s, "
                 "perceptual weight %g", name, device, self.precision, cfg.ema or "off", cfg.grad_clip or "off",
                 cfg.stages[1].adversarial_loss, cfg.perceptual.weight if perceptual else 0.0)
        if world_size > 1:
            log.info("%s: process %d of %d (DistributedDataParallel, backend %s), %d of the %d patches per step",
                     name, rank, world_size, dist.get_backend(), self.local_batch, cfg.batch_size)

    @property
    def precision(self) -> str:
        """'bf16' (autocast) or 'fp32'."""
        return "bf16" if self.amp_dtype is not None else "fp32"

    @property
    def eval_model(self) -> nn.Module:
        """The generator that is validated and exported: the EMA when enabled, else the trained weights."""
        return self.ema.model if self.ema is not None else self.generator

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def seconds(self) -> float:
        """Training wall time so far, including the runs before a resume."""
        return self.progress.elapsed + time.perf_counter() - self.clock

    # --- checkpoints -------------------------------------------------------------------------
    def try_resume(self) -> None:
        """Load checkpoint_dir/last.pt if it belongs to these settings and data; log why not otherwise."""
        path = self.checkpoint_path
        if not path.is_file():
            log.info("no checkpoint at %s: starting fresh", path)
            return
        try:
            state = load_checkpoint(path, map_location=self.device)
        except Exception as error:  # a truncated or foreign file: never fatal, just not usable
            log.warning("checkpoint %s is unreadable (%s): starting fresh", path, error)
            return
        if state.get("fingerprint") != self.fingerprint or (self.ema is not None) != ("ema" in state):
            log.warning("checkpoint %s was written for other settings or data: starting fresh", path)
            return
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        p = state["progress"]
        self.progress = _Progress(p["iteration"], p["stage"], list(p["history"]), dict(p["sums"]),
                                  p["count"], p["elapsed"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        sampler_rng = state["sampler_rng_ranks"][self.rank] if self.world_size > 1 else state["sampler_rng"]
        self.sampler.set_state(sampler_rng.cpu())
        self.resumed = state
        log.info("resuming from iteration %d (%s stage) of %s", self.progress.iteration, self.progress.stage,
                 path)

    def _barrier(self) -> None:
        """Wait for every process (nothing to wait for in a single-process run)."""
        if self.world_size > 1:
            dist.barrier()

    def save(self) -> None:
        """Atomically write the full training state to checkpoint_dir/last.pt.

        Distributed: every process's patch-sampler state is gathered and stored (`sampler_rng_ranks`), rank 0
        writes the file, the others wait.
        """
        ranks_rng = None
        if self.world_size > 1:
            ranks_rng = [None] * self.world_size
            dist.all_gather_object(ranks_rng, self.sampler.state())
            if not self.is_main:
                self._barrier()
                return
        p = self.progress
        state = {
            "fingerprint": self.fingerprint,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "progress": {"iteration": p.iteration, "stage": p.stage, "history": p.history, "sums": p.sums,
                         "count": p.count, "elapsed": self.seconds()},
            "torch_rng": torch.get_rng_state(),
            "sampler_rng": self.sampler.state(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if ranks_rng is not None:
            state["sampler_rng_ranks"] = [rng.cpu() for rng in ranks_rng]
        save_checkpoint(self.checkpoint_path, state)
        self._barrier()

    # --- one stage ------------------------------------------------------------------------------
    def _setup_stage(self, stage: StageSettings, begin: int) -> None:
        """Fresh Adam optimizers and multistep schedulers, or the checkpoint's when resuming mid-stage."""
        models = {"g": self.generator}
        if stage.name == "gan":
            models["d"] = self.discriminator
        self.optimizers = {k: torch.optim.Adam(m.parameters(), lr=stage.lr, betas=ADAM_BETAS)
                           for k, m in models.items()}
        self.schedulers = {
            k: torch.optim.lr_scheduler.MultiStepLR(o, milestones=stage.milestones, gamma=stage.gamma)
            for k, o in self.optimizers.items()
        }
        r = self.resumed
        if r is not None and r["progress"]["stage"] == stage.name and self.progress.iteration > begin:
            for k in self.optimizers:
                self.optimizers[k].load_state_dict(r["optimizers"][k])
                self.schedulers[k].load_state_dict(r["schedulers"][k])

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.sampler.sample(self.local_batch)
        lr = lr.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return lr, hr.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def _guard(self, what: str) -> RuntimeError:
        return RuntimeError(
            f"training {self.name}: non-finite {what} at iteration {self.progress.iteration + 1}; "
            f"the last good checkpoint {self.checkpoint_path} is kept"
        )

    def _check(self, **values: torch.Tensor) -> dict[str, float]:
        if self.world_size > 1:  # the mean over the processes: all see the same numbers, and stop together
            stacked = torch.stack([v.detach().float() for v in values.values()])
            dist.all_reduce(stacked)
            numbers = dict(zip(values, (stacked / self.world_size).tolist(), strict=True))
        else:
            numbers = {k: float(v.detach()) for k, v in values.items()}
        bad = [k for k, v in numbers.items() if not math.isfinite(v)]
        if bad:
            raise self._guard(f"{', '.join(bad)} loss")
        return numbers

    def _optimize(self, key: str, model: nn.Module, loss: torch.Tensor) -> None:
        """Backward, check (and clip) the gradient norm, step optimizer `key` ("g" or "d")."""
        optimizer = self.optimizers[key]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if self.cfg.grad_clip is None:
            norm = float(torch.nn.utils.get_total_norm(grads))
        else:
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip))
            self.progress.sums["clipped"] += float(norm > self.cfg.grad_clip)
            self.progress.sums["steps"] += 1.0
        if not math.isfinite(norm):
            raise self._guard(f"{'generator' if key == 'g' else 'discriminator'} gradient norm")
        optimizer.step()

    def _pixel_step(self, stage: StageSettings) -> dict[str, float]:
        lr, hr = self._batch()
        with self._autocast():
            sr = self.train_generator(lr)
        loss = self.pixel_loss(sr.float(), hr)
        numbers = self._check(pixel=loss)
        self._optimize("g", self.generator, loss)
        return numbers

    def _gan_step(self, stage: StageSettings) -> dict[str, float]:
        adversarial, generator, discriminator = self.adversarial, self.generator, self.discriminator
        # forward passes through the DDP wrappers when distributed; optimizer steps on the modules
        train_generator, train_discriminator = self.train_generator, self.train_discriminator
        lr, hr = self._batch()
        with self._autocast():
            # the real logits serve both steps: the generator step does not change the discriminator
            real_logits = train_discriminator(hr)
            sr = train_generator(lr)
            discriminator.requires_grad_(False)
            fake_logits = train_discriminator(sr)
            loss_perceptual = self.perceptual(sr, hr) if self.perceptual is not None else None
        loss_pixel = self.pixel_loss(sr.float(), hr)
        loss_adv = adversarial.generator(fake_logits, real_logits.detach())
        loss_g = stage.pixel_weight * loss_pixel + stage.adv_weight * loss_adv
        terms = {"pixel": loss_pixel, "adv": loss_adv}
        if loss_perceptual is not None:
            loss_g = loss_g + self.cfg.perceptual.weight * loss_perceptual
            terms["perceptual"] = loss_perceptual
        numbers = self._check(**terms)
        self._optimize("g", generator, loss_g)
        discriminator.requires_grad_(True)
        with self._autocast():
            fake_logits = train_discriminator(sr.detach())
        loss_d = adversarial.discriminator(real_logits, fake_logits)
        numbers.update(self._check(d=loss_d))
        self._optimize("d", discriminator, loss_d)
        return numbers

    @torch.no_grad()
    def validate(self) -> tuple[float, float, float]:
        """Mean RMSE, PSNR and SSIM (scisr.metrics: data range 1, border = scale) of the clipped output over the val set.

        Runs the EMA generator when enabled, in fp32 (no autocast) so the scores do not carry bf16 rounding.
        """
        model = self.eval_model
        was_training = model.training
        model.eval()
        border = self.cfg.scale
        scores = []
        for lr, hr in zip(self.val.lr, self.val.hr):
            x = lr[None].to(self.device).contiguous(memory_format=self.memory_format)
            sr = model(x).clamp_(0.0, 1.0)[0, 0].float().cpu().numpy()
            target = hr[0].numpy()
            scores.append([metric(sr, target, crop_border=border) for metric in (rmse, psnr, ssim)])
        model.train(was_training)
        means = np.mean(np.asarray(scores, dtype=np.float64), axis=0)
        return float(means[0]), float(means[1]), float(means[2])

    def _record(self, stage: str) -> None:
        """Validate and append a history row with the training losses averaged since the last row.

        Distributed: rank 0 validates and keeps the history; the others wait.
        """
        p = self.progress
        if self.is_main:
            self._append_row(stage)
        self._barrier()
        p.sums = {k: 0.0 for k in p.sums}
        p.count = 0

    def _append_row(self, stage: str) -> None:
        p = self.progress
        val_rmse, val_psnr, val_ssim = self.validate()
        mean = {k: (v / p.count if p.count else math.nan) for k, v in p.sums.items()}
        gan = stage == "gan"
        p.history.append({
            "iteration": p.iteration,
            "stage": stage,
            "loss_pixel": mean["pixel"],
            "loss_adv": mean["adv"] if gan else math.nan,
            "loss_perceptual": mean["perceptual"] if gan and self.perceptual is not None else math.nan,
            "loss_d": mean["d"] if gan else math.nan,
            "val_rmse": val_rmse,
            "val_psnr": val_psnr,
            "val_ssim": val_ssim,
            "lr": self.last_lr,
            "seconds": self.seconds(),
        })
        if p.sums["steps"] and p.sums["clipped"] > 0.5 * p.sums["steps"]:
            log.warning("%s: gradient norm clipped to grad_clip %g in %d of %d optimizer steps up to iteration %d",
                        self.name, self.cfg.grad_clip, p.sums["clipped"], p.sums["steps"], p.iteration)

    def run(self) -> None:
        """Train both stages from the current progress to the configured total."""
        total = sum(s.iterations for s in self.cfg.stages)
        self.clock = time.perf_counter()
        p = self.progress
        bar = tqdm(total=total, initial=p.iteration, desc=self.name, file=sys.stderr, mininterval=5.0,
                   ascii=True, disable=not self.is_main)
        if p.iteration == 0 and not p.history:
            self._record("init")  # the untrained network: with global_skip this is bicubic's score
        end = 0
        for stage in self.cfg.stages:
            begin, end = end, end + stage.iterations
            if stage.iterations == 0 or p.iteration >= end:
                continue
            self._setup_stage(stage, begin)
            step = self._pixel_step if stage.name == "pixel" else self._gan_step
            self.generator.train()
            self.discriminator.train()
            while p.iteration < end:
                numbers = step(stage)
                if self.ema is not None:
                    self.ema.update(self.generator)
                self.last_lr = self.optimizers["g"].param_groups[0]["lr"]
                for scheduler in self.schedulers.values():
                    scheduler.step()
                p.iteration += 1
                p.stage = stage.name
                p.count += 1
                for k, v in numbers.items():
                    p.sums[k] += v
                if p.iteration % self.cfg.val_every == 0 or p.iteration == end:
                    self._record(stage.name)
                if p.iteration % self.cfg.checkpoint_every == 0 or p.iteration == end:
                    self.save()
                bar.set_postfix_str(f"{stage.name} pixel {numbers['pixel']:.4f}", refresh=False)
                bar.update()
        bar.close()
        p.elapsed = self.seconds()
        self.clock = time.perf_counter()


def train_model(
    split_dir: str | Path,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    settings: dict,
    *,
    name: str,
    device: str = "cpu",
    threads: int = 1,
) -> None:
    """Train a generator on `split_dir` in this process; write generator.pt, history.tsv, model.yaml to `out_dir`.

    One process only: settings with gpus > 1 go through `run_training`.
    """
    split_dir, out_dir, checkpoint_dir = Path(split_dir), Path(out_dir), Path(checkpoint_dir)
    cfg = Settings.from_dict(settings)
    if cfg.gpus > 1:
        raise ValueError(f"training {name}: settings ask for gpus {cfg.gpus}; train_model runs one process, "
                         "run_training launches several with torchrun")
    dev = resolve_device(device)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    trainer, hr_sha = _make_trainer(split_dir, checkpoint_dir, settings, cfg, dev, name)
    trainer.try_resume()
    trainer.run()
    _write_outputs(trainer, out_dir, split_dir, hr_sha, settings)


def _make_trainer(split_dir: Path, checkpoint_dir: Path, settings: dict, cfg: Settings, device: torch.device,
                  name: str, *, rank: int = 0, world_size: int = 1) -> tuple[_Trainer, str]:
    """The trainer (its checkpoint fingerprint computed) and the sha256 of the training HR images."""
    perceptual = perceptual_loss(cfg)  # checks the VGG19 file's sha256 before any training
    hr_sha = folder_sha256(split_dir / "train" / "HR")
    data_sha = hr_sha + folder_sha256(split_dir / "train" / "LR") + (perceptual.sha256 if perceptual else "")
    # gpus 1 (the default) is left out, so settings with and without the key share one fingerprint
    hashed = {k: v for k, v in settings.items() if not (k == "gpus" and v == 1)}
    fingerprint = settings_hash(hashed, data_sha)
    trainer = _Trainer(split_dir, checkpoint_dir, cfg, fingerprint, device, name, perceptual, rank=rank,
                       world_size=world_size)
    return trainer, hr_sha


def _write_outputs(trainer: _Trainer, out_dir: Path, split_dir: Path, hr_sha: str, settings: dict) -> None:
    """generator.pt (EMA weights when enabled; a state dict), history.tsv and model.yaml, each atomically."""
    cfg, p = trainer.cfg, trainer.progress
    model = trainer.eval_model
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_dir / "generator.pt") as tmp:
        torch.save(weights, tmp)
    history = pd.DataFrame(p.history, columns=HISTORY_COLUMNS)
    with atomic_path(out_dir / "history.tsv") as tmp:
        history.to_csv(tmp, sep="\t", index=False, na_rep="NaN")
    last = p.history[-1]
    perceptual = trainer.perceptual
    card = {
        "name": trainer.name,
        "arch": cfg.generator["arch"],
        "args": trainer.generator_args,
        "in_channels": trainer.generator_args["in_channels"],
        "out_channels": trainer.generator_args["out_channels"],
        "scale": cfg.scale,
        "parameters": count_parameters(model),
        "training_data": {
            "split_dir": str(split_dir),
            "train_images": len(trainer.train.names),
            "val_images": len(trainer.val.names),
            "train_hr_sha256": hr_sha,
        },
        "iterations": {s.name: s.iterations for s in cfg.stages},
        "ema": cfg.ema,
        "exported_weights": "ema" if trainer.ema is not None else "last",
        "gan_loss": cfg.stages[1].adversarial_loss,
        "perceptual": {
            "weight": cfg.perceptual.weight if perceptual is not None else 0.0,
            "layer": cfg.perceptual.layer if perceptual is not None else None,
            "weights_file": cfg.perceptual.weights_file if perceptual is not None else None,
            "sha256": perceptual.sha256 if perceptual is not None else None,
        },
        "grad_clip": cfg.grad_clip,
        "precision": trainer.precision,
        "gpus": cfg.gpus,
        "distributed": (
            {"world_size": trainer.world_size, "backend": dist.get_backend(),
             "batch_per_process": trainer.local_batch, "global_batch": cfg.batch_size}
            if trainer.world_size > 1 else None
        ),
        "final_validation": {"val_rmse": float(last["val_rmse"]), "val_psnr": float(last["val_psnr"])},
        "wall_time_seconds": round(p.elapsed, 3),
        "device": str(trainer.device),
        "torch_version": str(torch.__version__),
        "seed": cfg.seed,
        "settings": json.loads(json.dumps(settings)),  # plain types for YAML
    }
    write_text_atomic(out_dir / "model.yaml", yaml.safe_dump(card, sort_keys=False))


DISTRIBUTED_SETTINGS = "distributed-settings.json"  # the settings handed to the torchrun workers


def run_training(
    split_dir: str | Path,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    settings: dict,
    *,
    name: str,
    device: str = "cpu",
    threads: int = 1,
) -> None:
    """Train one model: `train_model` in this process when settings `gpus` is 1 (the default), else `gpus`
    DistributedDataParallel processes on this node, launched with torchrun (scisr.train.distributed).

    With several processes `device` 'cuda' gives process i cuda:i (backend nccl), 'cpu' runs them all on the CPU
    (backend gloo); each gets max(1, threads // gpus) threads. The settings go to the workers as
    checkpoint_dir/distributed-settings.json; their output goes to this process's stderr (the job log).
    """
    cfg = Settings.from_dict(settings)
    if cfg.gpus == 1:
        train_model(split_dir, out_dir, checkpoint_dir, settings, name=name, device=device, threads=threads)
        return
    _launch_torchrun(Path(split_dir), Path(out_dir), Path(checkpoint_dir), settings, cfg.gpus, name=name,
                     device=device, threads=threads)


def _launch_torchrun(split_dir: Path, out_dir: Path, checkpoint_dir: Path, settings: dict, gpus: int, *,
                     name: str, device: str, threads: int) -> None:
    """Run scisr.train.distributed in `gpus` processes with torchrun --standalone, forwarding their output."""
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: use 'cpu' or 'cuda'")
    if dev.type == "cuda":
        if dev.index is not None:
            raise ValueError(f"training {name}: device {device!r} with gpus {gpus}: use 'cuda' (process i takes "
                             "cuda:i of the GPUs the job sees)")
        visible = torch.cuda.device_count()
        if visible < gpus:
            raise RuntimeError(
                f"training {name}: train.gpus is {gpus} but torch sees {visible} GPU(s); give the job {gpus} GPUs "
                "(the train rule requests compute.gpus x train.gpus) or lower train.gpus"
            )
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    settings_file = checkpoint_dir.resolve() / DISTRIBUTED_SETTINGS
    write_text_atomic(settings_file, json.dumps(settings, indent=1, sort_keys=True) + "\n")
    per_process = max(1, threads // gpus)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}",
        "-m", "scisr.train.distributed",
        str(split_dir.resolve()), str(out_dir.resolve()), str(checkpoint_dir.resolve()), str(settings_file),
        f"--name={name}", f"--device={device}", f"--threads={per_process}",
    ]
    # the workers import the scisr this process runs (in a conda env that is the scripts/scisr link, which is
    # on this process's path but not on a child's)
    package_root = str(Path(scisr.__file__).resolve().parents[1])
    env = dict(os.environ, OMP_NUM_THREADS=str(per_process), PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    log.info("training %s in %d processes (%s, %d threads each): %s", name, gpus, device, per_process,
             " ".join(command))
    tail: collections.deque[str] = collections.deque(maxlen=200)
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                          errors="replace", bufsize=1) as process:
        try:
            for line in process.stdout:
                sys.stderr.write(line)
                tail.append(line)
            sys.stderr.flush()
            code = process.wait()
        except BaseException:  # interrupted: take the workers down with us
            process.terminate()
            process.wait()
            raise
    if code != 0:
        raise RuntimeError(_failure(name, gpus, code, "".join(tail)))


def _failure(name: str, gpus: int, code: int, output: str) -> str:
    """The error of a failed torchrun: the root-cause rank, its exit code and exception, read from its summary."""
    root_cause = output[output.rfind("Root Cause"):] if "Root Cause" in output else output
    found = re.search(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*\d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)", root_cause)
    where = f"rank {found[1]} exited with code {found[2]}" if found else f"torchrun exited with code {code}"
    errors = re.findall(r"^\s*((?:[\w.]+\.)?\w*(?:Error|Exception|Interrupt)\b:.*)$", root_cause, re.M)
    reason = f" ({errors[-1].strip()})" if errors else ""
    return (f"training {name} in {gpus} processes (torchrun) failed: {where}{reason}; the processes' output is "
            "in the job log above")
