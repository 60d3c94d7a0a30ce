"""The training step's execution choices, each measured (bench/train_step.py) and none changing what is learnt.

`fast=False` is the straightforward path the trainer took before these choices (channels_last for every
network, PyTorch's default Adam, a per-parameter gradient-norm loop); tests/test_train_speed.py trains the same
seed both ways and compares the loss and validation histories.

- Memory format per generator architecture (CPU, fp32, measured on an idle 2-core AVX-512 EPYC, torch 2.13,
  `bench/train_step.py --formats`, medians of 7 interleaved steps): SRResNet-16x64 trains 1.2-1.3x faster
  in channels_last than a NCHW step. RRDBNet-23 (batch 4, 96 px): channels_last 1.775 s against NCHW
  1.906 s at 2 threads (1.10x and 1.02x the BasicSR-style step), 2.943 s against 2.972 s at 1 thread. An
  earlier 1-thread run under load 5-7 had NCHW 4% ahead; idle, channels_last wins at both thread counts,
  so every generator trains channels_last (the table stays, per architecture, for the next measurement).
  Discriminators and VGG19 are plain conv stacks: channels_last. On CUDA every network runs channels_last
  (the layout tensor cores want; bench/gpu.sh measures both).
- Adam: `fused=True` (one kernel over all parameters; on CPU it cut the optimizer step of RRDBNet-23's
  16.7M parameters about 4x against the default per-parameter loop). The same update rule; only float
  rounding differs.
- Non-finite-gradient guard: the total gradient norm is still computed every step, before the update, so a
  finite loss with a non-finite gradient (overflow in backward) stops training before the weights change.
  It is one pass over the gradients through `torch._foreach_norm` (`foreach=True`) instead of one
  `vector_norm` call per parameter: on CPU PyTorch's default is that Python loop. Checking only every N steps
  would be cheaper still but would let a non-finite update reach the weights (and the EMA), which the guard
  exists to prevent; the loss check alone misses gradients that overflow while the loss stays finite.
- Precision (`amp`): `auto` trains under bf16 autocast where the hardware has bf16 (CUDA GPUs that support it,
  CPUs with AVX512-BF16 or AMX: `scisr.models.device.bf16_support`) and fp32 elsewhere, saying which and why in
  the log and the model card; `bf16` forces autocast (slow where bf16 is emulated), `off` stays fp32. Weights,
  Adam state, the EMA, losses and validation are fp32 either way. bench/bf16_quality.py trains the same runs
  in both and compares validation PSNR/RMSE over seeds; bench/train_step.py times the steps.
- Patches are sampled on the critical path: measured at 0.5 ms for 16 patches of 64 px against 80 ms or
  more per step on CPU (under 1%), so a prefetch thread would only compete for the 2 cores. On CUDA the
  batch is copied from pinned memory without blocking.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from scisr.models.device import bf16_support

# generator architecture -> memory format on CPU (bench/train_step.py --formats measures both)
CPU_MEMORY_FORMATS = {"srresnet": torch.channels_last, "rrdbnet": torch.channels_last}


def amp_choice(amp: str, device: torch.device) -> tuple[torch.dtype | None, str]:
    """The autocast dtype of training (bf16, or None for fp32) for the `amp` setting on `device`, and why."""
    if amp == "off":
        return None, "fp32: amp is off"
    supported, reason = bf16_support(device)
    if amp == "bf16":
        return torch.bfloat16, "bf16 autocast: amp is bf16" + ("" if supported else f" (but {reason})")
    return (torch.bfloat16 if supported else None), reason


def format_name(memory_format: torch.memory_format) -> str:
    """'channels_last' or 'contiguous' (for logs and the model card)."""
    return "channels_last" if memory_format == torch.channels_last else "contiguous"


def generator_memory_format(arch: str, device: torch.device, fast: bool = True) -> torch.memory_format:
    """The memory format the generator `arch` trains in on `device` (channels_last unless measured otherwise)."""
    if not fast or device.type != "cpu":
        return torch.channels_last
    return CPU_MEMORY_FORMATS.get(arch, torch.channels_last)


def adam(
    params: Iterable[nn.Parameter], lr: float, betas: tuple[float, float], device: torch.device, fast: bool = True
) -> torch.optim.Adam:
    """Adam over `params`: the fused implementation where this torch has it for `device`, else the default."""
    fused = fast and device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=lr, betas=betas, **({"fused": True} if fused else {}))


def gradient_norm(model: nn.Module, clip: float | None, fast: bool = True) -> float:
    """The total L2 norm of `model`'s gradients (before clipping them to `clip` when it is set)."""
    foreach = True if fast else None
    if clip is None:
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        return float(torch.nn.utils.get_total_norm(grads, foreach=foreach))
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=foreach))
