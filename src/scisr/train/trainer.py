"""The trainer: one two-stage SRGAN/ESRGAN run — models, data, progress, checkpoints, validation and the loop.

Stage 1 trains the generator on a pixel loss; stage 2 adds an adversarial loss (and optionally a VGG19
perceptual loss) against a discriminator. Both stages use Adam (betas 0.9, 0.999, as SRGAN and ESRGAN) and a
multistep learning-rate decay; the GAN stage starts fresh optimizers from the pretrained generator (the EMA
carries on across stages). Generator loss of the GAN stage: pixel_weight * pixel + adv_weight * adversarial +
perceptual.weight * perceptual. Validation runs every val_every iterations and at the end of each stage.
Memory format, Adam implementation and gradient guard are chosen for speed in scisr.train.speed; the training
steps themselves (sampling, forward passes, guarded losses, optimizer steps) are in scisr.train.steps. A
checkpoint resumes only when it was written for the same settings (gpus included), the same training data (HR
and LR bytes), the same VGG19 weights file and the same checkpoint format (`fingerprint`). Wall-clock seconds are
kept per stage in the progress (and so in checkpoints), so a resumed run reports the time of all its runs.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from scisr.metrics import psnr, rmse, ssim
from scisr.models import build_discriminator
from scisr.prepare.store import open_part, open_store
from scisr.train import losses
from scisr.train.checkpoint import load_checkpoint, save_checkpoint, settings_hash
from scisr.train.data import PatchSampler
from scisr.train.ema import EMA
from scisr.train.progress import Progress
from scisr.train.settings import Settings, StageSettings
from scisr.train.speed import adam, amp_choice, format_name, generator_memory_format
from scisr.train.start import InitWeights, start_generator
from scisr.train.steps import TrainingSteps

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
ADAM_BETAS = (0.9, 0.999)  # SRGAN and ESRGAN


def perceptual_loss(cfg: Settings) -> losses.PerceptualLoss | None:
    """The VGG19 perceptual loss the settings ask for (weights file checked and read), or None."""
    if not cfg.uses_perceptual:
        return None
    p = cfg.perceptual
    return losses.PerceptualLoss(p.weights_file, layer=p.layer, sha256=p.sha256)


def fingerprint(
    settings: dict, train_hr_sha256: str, train_lr_sha256: str, perceptual: losses.PerceptualLoss | None
) -> str:
    """What a checkpoint must match to be resumed: the settings, the training data's bytes, the VGG19 file."""
    data_sha = train_hr_sha256 + train_lr_sha256 + (perceptual.sha256 if perceptual else "")
    # gpus 1 is left out, so settings with and without the key share one fingerprint
    hashed = {k: v for k, v in settings.items() if not (k == "gpus" and v == 1)}
    return settings_hash(hashed, data_sha)


class Trainer(TrainingSteps):
    """One training run: the models, the data, the progress, and the two stages.

    With world_size > 1 this is process `rank` of a DistributedDataParallel run (the process group already
    initialised): it draws batch_size / world_size patches from its own stream (seed + rank), steps through
    DDP wrappers that average the gradients, and reports the losses averaged over the processes, so every
    process holds the same progress. Rank 0 alone validates and writes checkpoints; the others wait at
    barriers. EMA, checkpoints and exports use the unwrapped modules (state-dict keys as single-process);
    batch-norm statistics are rank 0's (DDP hands them to every process at the start of each forward pass).
    """

    hooks: tuple = ()  # callables run with the trainer after every iteration (e.g. scisr.train.budget snapshots)

    def __init__(
        self,
        train_dir: str | Path,
        val_dir: str | Path,
        checkpoint_dir: str | Path,
        cfg: Settings,
        fingerprint: str,
        device: torch.device,
        name: str,
        perceptual: losses.PerceptualLoss | None = None,
        *,
        rank: int = 0,
        world_size: int = 1,
        fast: bool = True,
        init: InitWeights | None = None,
        store: str | Path | None = None,
    ) -> None:
        if cfg.uses_perceptual and perceptual is None:
            raise ValueError("training settings ask for a perceptual loss: pass perceptual_loss(cfg)")
        if world_size != cfg.gpus or not 0 <= rank < world_size:
            raise ValueError(f"training settings ask for gpus {cfg.gpus}: got process {rank} of {world_size}")
        self.rank, self.world_size, self.fast = rank, world_size, fast  # fast=False: scisr.train.speed
        self.is_main = rank == 0
        self.cfg = cfg
        self.device = device
        self.name = name
        self.fingerprint = fingerprint
        self.checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME
        # the pairs in a uint16 store read a patch at a time (scisr.prepare.store): memory does not grow with the
        # data. The split phase's store of the dataset, or one written once into the checkpoint folder.
        if store is not None:
            self.train, self.val = open_part(train_dir, store), open_part(val_dir, store)
        else:
            stores = Path(checkpoint_dir) / "store"
            self.train = open_store(train_dir, cfg.scale, stores / "train")
            self.val = open_store(val_dir, cfg.scale, stores / "val")
        self.data_channels = channels = 1  # the split's 16-bit grayscale pairs
        torch.manual_seed(cfg.seed)
        # from scratch, or from the init model's weights (fine-tuning; a ChannelAdapter for other channels)
        self.generator, self.generator_args = start_generator(cfg, channels, init, name)
        disc_settings = {k: v for k, v in cfg.discriminator.items() if k != "arch"}
        self.discriminator = build_discriminator(cfg.discriminator["arch"], in_channels=channels, **disc_settings)
        # the generator's (and its input's) format by architecture; the other networks run channels_last
        self.memory_format = generator_memory_format(cfg.generator["arch"], device, fast)
        self.generator.to(device, memory_format=self.memory_format)
        self.discriminator.to(device, memory_format=torch.channels_last)
        self.ema = EMA(self.generator, cfg.ema, foreach=fast) if cfg.ema > 0 else None
        # what a training step calls: DDP wrappers (gradients averaged over the processes) or the models themselves
        self.train_generator: nn.Module = self.generator
        self.train_discriminator: nn.Module = self.discriminator
        if world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.train_generator = DistributedDataParallel(self.generator, device_ids=ids)
            self.train_discriminator = DistributedDataParallel(self.discriminator, device_ids=ids)
        self.perceptual = perceptual.to(device, memory_format=torch.channels_last) if perceptual else None
        # bf16 autocast where it pays (scisr.models.device.bf16_support: CUDA with bf16, CPUs with AVX512-BF16 or
        # AMX); weights, optimizer state, EMA, losses and validation stay fp32 (no GradScaler needed for bf16)
        self.amp_dtype, self.precision_reason = amp_choice(cfg.amp, device)
        self.sampler = PatchSampler(self.train, cfg.scale, cfg.patch_size, cfg.seed + rank)
        self.local_batch = cfg.batch_size // world_size
        self.pixel_loss = losses.pixel_loss(cfg.pixel_loss)
        self.adversarial = losses.adversarial_loss(cfg.stages[1].adversarial_loss)
        self.progress = Progress()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.resumed: dict | None = None
        self.last_lr = math.nan  # the generator learning rate of the latest iteration
        self.clock = time.perf_counter()  # time since then is not yet in progress.elapsed (see tick)
        log.info(
            "training %s on %s: precision %s (%s), generator %s, ema %s, grad_clip %s, gan.loss %s, perceptual "
            "weight %g",
            name,
            device,
            self.precision,
            self.precision_reason,
            format_name(self.memory_format),
            cfg.ema or "off",
            cfg.grad_clip or "off",
            cfg.stages[1].adversarial_loss,
            cfg.perceptual.weight if perceptual else 0.0,
        )
        if world_size > 1:
            log.info(
                "%s: process %d of %d (DistributedDataParallel, backend %s), %d of the %d patches per step",
                name,
                rank,
                world_size,
                dist.get_backend(),
                self.local_batch,
                cfg.batch_size,
            )

    @property
    def precision(self) -> str:
        """'bf16' (autocast) or 'fp32'."""
        return "bf16" if self.amp_dtype is not None else "fp32"

    @property
    def eval_model(self) -> nn.Module:
        """The generator that is validated and exported: the EMA when enabled, else the trained weights."""
        return self.ema.model if self.ema is not None else self.generator

    def tick(self) -> None:
        """Add the time since the last tick to the current stage's seconds (and the total)."""
        now = time.perf_counter()
        p = self.progress
        p.elapsed += now - self.clock
        p.stage_seconds[p.stage] = p.stage_seconds.get(p.stage, 0.0) + now - self.clock
        self.clock = now

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
        self.progress = Progress.from_dict(state["progress"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        sampler_rng = state["sampler_rng_ranks"][self.rank] if self.world_size > 1 else state["sampler_rng"]
        self.sampler.set_state(sampler_rng.cpu())
        self.resumed = state
        log.info("resuming from iteration %d (%s stage) of %s", self.progress.iteration, self.progress.stage, path)

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for in a single-process run)."""
        if self.world_size > 1:
            dist.barrier()

    def save(self) -> None:
        """Atomically write the full training state to checkpoint_dir/last.pt.

        Distributed: every process's patch-sampler state is gathered and stored (`sampler_rng_ranks`), rank 0
        writes the file, the others wait.
        """
        self.tick()
        ranks_rng = None
        if self.world_size > 1:
            ranks_rng = [None] * self.world_size
            dist.all_gather_object(ranks_rng, self.sampler.state())
            if not self.is_main:
                self.barrier()
                return
        p = self.progress
        state = {
            "fingerprint": self.fingerprint,
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "progress": p.to_dict(),
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
        self.barrier()

    # --- one stage ------------------------------------------------------------------------------
    def setup_stage(self, stage: StageSettings, begin: int) -> None:
        """Fresh Adam optimizers and multistep schedulers, or the checkpoint's when resuming mid-stage."""
        models = {"g": self.generator}
        if stage.name == "gan":
            models["d"] = self.discriminator
        self.optimizers = {
            k: adam(m.parameters(), stage.lr, ADAM_BETAS, self.device, self.fast) for k, m in models.items()
        }
        self.schedulers = {
            k: torch.optim.lr_scheduler.MultiStepLR(o, milestones=stage.milestones, gamma=stage.gamma)
            for k, o in self.optimizers.items()
        }
        r = self.resumed
        if r is not None and r["progress"]["stage"] == stage.name and self.progress.iteration > begin:
            for k in self.optimizers:
                self.optimizers[k].load_state_dict(r["optimizers"][k])
                self.schedulers[k].load_state_dict(r["schedulers"][k])

    @torch.no_grad()
    def validate(self) -> tuple[float, float, float]:
        """Mean RMSE, PSNR and SSIM (scisr.metrics: data range 1, border = scale) of the clipped output over the val
        set.

        Runs the EMA generator when enabled, in fp32 (no autocast) so the scores do not carry bf16 rounding.
        """
        model = self.eval_model
        was_training = model.training
        model.eval()
        border = self.cfg.scale
        scores = []
        for i in range(len(self.val)):
            lr, target = self.val.image(i)
            x = torch.from_numpy(lr)[None, None].to(self.device).contiguous(memory_format=self.memory_format)
            sr = model(x).clamp_(0.0, 1.0)[0, 0].float().cpu().numpy()
            scores.append([metric(sr, target, crop_border=border) for metric in (rmse, psnr, ssim)])
        model.train(was_training)
        means = np.mean(np.asarray(scores, dtype=np.float64), axis=0)
        return float(means[0]), float(means[1]), float(means[2])

    def record(self, stage: str) -> None:
        """Validate and append a history row with the training losses averaged since the last row.

        Distributed: rank 0 validates and keeps the history; the others wait.
        """
        p = self.progress
        if self.is_main:
            self._append_row(stage)
        self.barrier()
        p.sums = {k: 0.0 for k in p.sums}
        p.count = 0

    def _append_row(self, stage: str) -> None:
        p = self.progress
        val_rmse, val_psnr, val_ssim = self.validate()
        self.tick()
        mean = {k: (v / p.count if p.count else math.nan) for k, v in p.sums.items()}
        gan = stage == "gan"
        p.history.append(
            {
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
                "seconds": self.progress.elapsed,
            }
        )
        if p.sums["steps"] and p.sums["clipped"] > 0.5 * p.sums["steps"]:
            log.warning(
                "%s: gradient norm clipped to grad_clip %g in %d of %d optimizer steps up to iteration %d",
                self.name,
                self.cfg.grad_clip,
                p.sums["clipped"],
                p.sums["steps"],
                p.iteration,
            )

    def run(self) -> None:
        """Train both stages from the current progress to the configured total."""
        total = self.cfg.total_iterations
        self.clock = time.perf_counter()
        p = self.progress
        bar = tqdm(
            total=total,
            initial=p.iteration,
            desc=self.name,
            file=sys.stderr,
            mininterval=5.0,
            ascii=True,
            disable=not self.is_main,
        )
        if p.iteration == 0 and not p.history:
            self.record("init")  # the untrained network: with global_skip this is bicubic's score
        end = 0
        for stage in self.cfg.stages:
            begin, end = end, end + stage.iterations
            if stage.iterations == 0 or p.iteration >= end:
                continue
            self.setup_stage(stage, begin)
            self.generator.train()
            self.discriminator.train()
            while p.iteration < end:
                numbers = self.step(stage)
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
                    self.record(stage.name)
                for hook in self.hooks:
                    hook(self)
                if p.iteration % self.cfg.checkpoint_every == 0 or p.iteration == end:
                    self.save()
                bar.set_postfix_str(f"{stage.name} pixel {numbers['pixel']:.4f}", refresh=False)
                bar.update()
        bar.close()
        self.tick()
