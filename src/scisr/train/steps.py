"""The trainer's training steps: a batch of patches, the pixel and GAN iterations, the loss and gradient guards.

A mixin of scisr.train.trainer.Trainer, which holds the state these methods use: cfg, name, device, rank and
world_size, fast, the models (generator, discriminator and their train_* wrappers, DDP when distributed), the
losses (pixel_loss, adversarial, perceptual), sampler, local_batch, memory_format, amp_dtype, optimizers,
progress and checkpoint_path.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.distributed as dist
from torch import nn

from scisr.train.settings import StageSettings
from scisr.train.speed import gradient_norm


class TrainingSteps:
    """One training iteration of a stage (`step`): sampling, forward passes, guarded losses, optimizer steps."""

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.sampler.sample(self.local_batch)
        if self.device.type == "cuda":  # pinned: the copies do not block
            lr, hr = lr.pin_memory(), hr.pin_memory()
        lr = lr.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        return lr, hr.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)

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
        norm = gradient_norm(model, self.cfg.grad_clip, self.fast)  # every step, before the update
        if self.cfg.grad_clip is not None:
            self.progress.sums["clipped"] += float(norm > self.cfg.grad_clip)
            self.progress.sums["steps"] += 1.0
        if not math.isfinite(norm):
            raise self._guard(f"{'generator' if key == 'g' else 'discriminator'} gradient norm")
        optimizer.step()

    def step(self, stage: StageSettings) -> dict[str, float]:
        """One training iteration of `stage` (no EMA update, no scheduler step); the losses as numbers."""
        return self.pixel_step(stage) if stage.name == "pixel" else self.gan_step(stage)

    def pixel_step(self, stage: StageSettings) -> dict[str, float]:
        """One generator step on the pixel loss."""
        lr, hr = self._batch()
        with self._autocast():
            sr = self.train_generator(lr)
        loss = self.pixel_loss(sr.float(), hr)
        numbers = self._check(pixel=loss)
        self._optimize("g", self.generator, loss)
        return numbers

    def gan_step(self, stage: StageSettings) -> dict[str, float]:
        """One generator step (pixel + adversarial + perceptual) then one discriminator step."""
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
