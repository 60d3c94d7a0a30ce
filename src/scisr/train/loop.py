"""Two-stage SRGAN training: pixel-loss pretraining, then adversarial + pixel loss; resumable.

Settings (a dict validated by the workflow's schema; every key is required unless marked optional):

    seed             int     seeds model initialisation (torch) and patch sampling (a torch.Generator)
    scale            int     2, 4 or 8; LR images are exactly HR / scale
    generator        dict    {"arch": <name in scisr.models.GENERATORS>, **builder arguments}, e.g.
                             {"arch": "srresnet", "channels": 32, "blocks": 4, "batch_norm": false};
                             in_channels, out_channels and scale are filled in from the data and `scale`
    discriminator    dict    {"arch": <name in scisr.models.DISCRIMINATORS>, **builder arguments}, e.g.
                             {"arch": "vgg", "base_channels": 32, "pool": 1}; in_channels is filled in
    batch_size       int     patches per iteration
    patch_size       int     HR patch side in pixels, a multiple of `scale` (clamped to the smallest image)
    pixel_loss       str     name in scisr.train.losses.PIXEL_LOSSES ("l1", "l2")
    pixel            dict    stage 1: {"iterations", "lr", "milestones", "gamma"}: Adam at "lr", multiplied by
                             "gamma" after each milestone (counted in iterations of this stage)
    gan              dict    stage 2: {"iterations" (0 skips the stage), "lr", "adv_weight", "pixel_weight",
                             "milestones", "gamma", "loss" (optional, default "bce": a name in
                             scisr.train.losses.ADVERSARIAL_LOSSES)}
    val_every        int     validate on the whole val set every this many (global) iterations
    checkpoint_every int     save checkpoint_dir/last.pt every this many (global) iterations

Both stages use Adam and a multistep learning-rate decay; the GAN stage starts fresh optimizers from
the pretrained generator. Validation also runs at the end of each stage. A checkpoint resumes only when
it was written for the same settings and the same training data (HR and LR bytes).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from tqdm import tqdm

from scisr.io.files import atomic_path, write_text_atomic
from scisr.metrics import psnr, rmse, ssim
from scisr.models import build_discriminator, build_generator, count_parameters, generator_arguments
from scisr.models.device import resolve_device
from scisr.train import losses
from scisr.train.checkpoint import load_checkpoint, save_checkpoint, settings_hash
from scisr.train.data import PatchSampler, folder_sha256, load_pairs

log = logging.getLogger(__name__)

HISTORY_COLUMNS = [
    "iteration", "stage", "loss_pixel", "loss_adv", "loss_d", "val_rmse", "val_psnr", "val_ssim", "lr", "seconds",
]
CHECKPOINT_NAME = "last.pt"


def _require(mapping: dict, key: str, where: str = ""):
    try:
        return mapping[key]
    except KeyError:
        raise KeyError(f"training settings: missing key '{where}{key}'") from None


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

    @classmethod
    def from_dict(cls, settings: dict) -> Settings:
        """Read a settings dict (see the module docstring), naming any missing key."""
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
                adversarial_loss=str(gan.get("loss", "bce")),
            ),
        ]
        parsed = cls(
            seed=int(_require(settings, "seed")),
            scale=int(_require(settings, "scale")),
            generator=dict(_require(settings, "generator")),
            discriminator=dict(_require(settings, "discriminator")),
            batch_size=int(_require(settings, "batch_size")),
            patch_size=int(_require(settings, "patch_size")),
            pixel_loss=str(_require(settings, "pixel_loss")),
            stages=stages,
            val_every=int(_require(settings, "val_every")),
            checkpoint_every=int(_require(settings, "checkpoint_every")),
        )
        _require(parsed.generator, "arch", "generator.")
        _require(parsed.discriminator, "arch", "discriminator.")
        if sum(s.iterations for s in stages) <= 0:
            raise ValueError("training settings: pixel.iterations + gan.iterations must be positive")
        return parsed


@dataclass
class _Progress:
    """Everything that changes while training, saved in checkpoints."""

    iteration: int = 0
    stage: str = "pixel"
    history: list[dict] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=lambda: {"pixel": 0.0, "adv": 0.0, "d": 0.0})
    count: int = 0
    elapsed: float = 0.0


class _Trainer:
    """One training run: the models, the data, the progress, and the two stages."""

    def __init__(self, split_dir: Path, checkpoint_dir: Path, cfg: Settings, fingerprint: str,
                 device: torch.device, name: str) -> None:
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
        # channels_last measured faster on CPU for both networks
        self.memory_format = torch.channels_last if device.type == "cpu" else torch.contiguous_format
        self.generator.to(device, memory_format=self.memory_format)
        self.discriminator.to(device, memory_format=self.memory_format)
        self.sampler = PatchSampler(self.train, cfg.scale, cfg.patch_size, cfg.seed)
        self.pixel_loss = losses.pixel_loss(cfg.pixel_loss)
        self.progress = _Progress()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.resumed: dict | None = None
        self.last_lr = math.nan  # the generator learning rate of the latest iteration
        self.clock = time.perf_counter()  # seconds() = progress.elapsed at start + time since clock

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
        if state.get("fingerprint") != self.fingerprint:
            log.warning("checkpoint %s was written for other settings or data: starting fresh", path)
            return
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        p = state["progress"]
        self.progress = _Progress(p["iteration"], p["stage"], list(p["history"]), dict(p["sums"]),
                                  p["count"], p["elapsed"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.sampler.set_state(state["sampler_rng"].cpu())
        self.resumed = state
        log.info("resuming from iteration %d (%s stage) of %s", self.progress.iteration, self.progress.stage,
                 path)

    def save(self) -> None:
        """Atomically write the full training state to checkpoint_dir/last.pt."""
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
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        save_checkpoint(self.checkpoint_path, state)

    # --- one stage ------------------------------------------------------------------------------
    def _setup_stage(self, stage: StageSettings, begin: int) -> None:
        """Fresh Adam optimizers and multistep schedulers, or the checkpoint's when resuming mid-stage."""
        models = {"g": self.generator}
        if stage.name == "gan":
            models["d"] = self.discriminator
        self.optimizers = {k: torch.optim.Adam(m.parameters(), lr=stage.lr) for k, m in models.items()}
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
        lr, hr = self.sampler.sample(self.cfg.batch_size)
        lr = lr.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return lr, hr.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def _check(self, **values: torch.Tensor) -> dict[str, float]:
        numbers = {k: float(v.detach()) for k, v in values.items()}
        bad = [k for k, v in numbers.items() if not math.isfinite(v)]
        if bad:
            raise RuntimeError(
                f"training {self.name}: non-finite {', '.join(bad)} loss at iteration "
                f"{self.progress.iteration + 1}; the last good checkpoint {self.checkpoint_path} is kept"
            )
        return numbers

    def _pixel_step(self, stage: StageSettings) -> dict[str, float]:
        lr, hr = self._batch()
        loss = self.pixel_loss(self.generator(lr), hr)
        numbers = self._check(pixel=loss)
        opt = self.optimizers["g"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return numbers

    def _gan_step(self, stage: StageSettings) -> dict[str, float]:
        adversarial = losses.adversarial_loss(stage.adversarial_loss)
        lr, hr = self._batch()
        sr = self.generator(lr)
        self.discriminator.requires_grad_(False)
        real_logits = self.discriminator(hr).detach() if adversarial.generator_needs_real else None
        loss_pixel = self.pixel_loss(sr, hr)
        loss_adv = adversarial.generator(self.discriminator(sr), real_logits)
        loss_g = stage.pixel_weight * loss_pixel + stage.adv_weight * loss_adv
        numbers = self._check(pixel=loss_pixel, adv=loss_adv)
        self.optimizers["g"].zero_grad(set_to_none=True)
        loss_g.backward()
        self.optimizers["g"].step()
        self.discriminator.requires_grad_(True)
        loss_d = adversarial.discriminator(self.discriminator(hr), self.discriminator(sr.detach()))
        numbers.update(self._check(d=loss_d))
        self.optimizers["d"].zero_grad(set_to_none=True)
        loss_d.backward()
        self.optimizers["d"].step()
        return numbers

    @torch.no_grad()
    def validate(self) -> tuple[float, float, float]:
        """Mean RMSE, PSNR and SSIM (scisr.metrics: data range 1, border = scale) of the clipped output over the val set."""
        self.generator.eval()
        border = self.cfg.scale
        scores = []
        for lr, hr in zip(self.val.lr, self.val.hr):
            x = lr[None].to(self.device).contiguous(memory_format=self.memory_format)
            sr = self.generator(x).clamp_(0.0, 1.0)[0, 0].float().cpu().numpy()
            target = hr[0].numpy()
            scores.append([metric(sr, target, crop_border=border) for metric in (rmse, psnr, ssim)])
        self.generator.train()
        means = np.mean(np.asarray(scores, dtype=np.float64), axis=0)
        return float(means[0]), float(means[1]), float(means[2])

    def _record(self, stage: str) -> None:
        """Validate and append a history row with the training losses averaged since the last row."""
        p = self.progress
        val_rmse, val_psnr, val_ssim = self.validate()
        mean = {k: (v / p.count if p.count else math.nan) for k, v in p.sums.items()}
        p.history.append({
            "iteration": p.iteration,
            "stage": stage,
            "loss_pixel": mean["pixel"],
            "loss_adv": mean["adv"] if stage == "gan" else math.nan,
            "loss_d": mean["d"] if stage == "gan" else math.nan,
            "val_rmse": val_rmse,
            "val_psnr": val_psnr,
            "val_ssim": val_ssim,
            "lr": self.last_lr,
            "seconds": self.seconds(),
        })
        p.sums = {k: 0.0 for k in p.sums}
        p.count = 0

    def run(self) -> None:
        """Train both stages from the current progress to the configured total."""
        total = sum(s.iterations for s in self.cfg.stages)
        self.clock = time.perf_counter()
        p = self.progress
        bar = tqdm(total=total, initial=p.iteration, desc=self.name, file=sys.stderr, mininterval=5.0,
                   ascii=True)
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
    """Train a generator on `split_dir` and write generator.pt, history.tsv and model.yaml to `out_dir`."""
    split_dir, out_dir, checkpoint_dir = Path(split_dir), Path(out_dir), Path(checkpoint_dir)
    cfg = Settings.from_dict(settings)
    dev = resolve_device(device)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    hr_sha = folder_sha256(split_dir / "train" / "HR")
    fingerprint = settings_hash(settings, hr_sha + folder_sha256(split_dir / "train" / "LR"))
    trainer = _Trainer(split_dir, checkpoint_dir, cfg, fingerprint, dev, name)
    trainer.try_resume()
    trainer.run()
    _write_outputs(trainer, out_dir, split_dir, hr_sha, settings)


def _write_outputs(trainer: _Trainer, out_dir: Path, split_dir: Path, hr_sha: str, settings: dict) -> None:
    """generator.pt (state dict only), history.tsv and the model card model.yaml, each atomically."""
    cfg, p = trainer.cfg, trainer.progress
    weights = {k: v.detach().cpu().contiguous() for k, v in trainer.generator.state_dict().items()}
    with atomic_path(out_dir / "generator.pt") as tmp:
        torch.save(weights, tmp)
    history = pd.DataFrame(p.history, columns=HISTORY_COLUMNS)
    with atomic_path(out_dir / "history.tsv") as tmp:
        history.to_csv(tmp, sep="\t", index=False, na_rep="NaN")
    last = p.history[-1]
    card = {
        "name": trainer.name,
        "arch": cfg.generator["arch"],
        "args": trainer.generator_args,
        "in_channels": trainer.generator_args["in_channels"],
        "out_channels": trainer.generator_args["out_channels"],
        "scale": cfg.scale,
        "parameters": count_parameters(trainer.generator),
        "training_data": {
            "split_dir": str(split_dir),
            "train_images": len(trainer.train.names),
            "val_images": len(trainer.val.names),
            "train_hr_sha256": hr_sha,
        },
        "iterations": {s.name: s.iterations for s in cfg.stages},
        "final_validation": {"val_rmse": float(last["val_rmse"]), "val_psnr": float(last["val_psnr"])},
        "wall_time_seconds": round(p.elapsed, 3),
        "device": str(trainer.device),
        "torch_version": str(torch.__version__),
        "seed": cfg.seed,
        "settings": json.loads(json.dumps(settings)),  # plain types for YAML
    }
    write_text_atomic(out_dir / "model.yaml", yaml.safe_dump(card, sort_keys=False))

