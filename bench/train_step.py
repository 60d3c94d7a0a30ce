"""SciSR's training iteration against a BasicSR-style step on the same generator, side by side in one process.

anchor   what BasicSR's SRModel does per iteration, written here from the algorithm (no BasicSR code): the
         batch is already in memory (its DataLoader workers prefetch), NCHW fp32, generator forward, L1 loss,
         backward, Adam (PyTorch's default implementation), `loss.item()`; no EMA, no checks.
SciSR    one iteration of `Trainer.run`'s loop: `Trainer.step` (patch sampling and dihedral augmentation on
         the critical path, forward, L1, non-finite loss and gradient-norm guards, backward, Adam), the EMA
         update (decay 0.999) and the scheduler step, with the speed choices of scisr.train.speed, in the
         precision `amp: auto` picks (bf16 autocast where the CPU or GPU has bf16: scisr.models.device).
SciSR fp32  the same with `amp: off`, printed when auto picked bf16 (the path of a machine without bf16).
plain    the same SciSR iteration with those choices off (`Trainer(fast=False)`: the trainer before them).

Both start from the same weights and train on the same synthetic 1-channel images (96-px HR patches, x4).
Runs are interleaved (anchor, plain, SciSR, anchor, ...) and each side's median is reported; the ratio is
anchor seconds / SciSR seconds (>1: SciSR faster). FLOPs are the generator's convolution and matmul FLOPs of
one forward+backward (torch.utils.flop_counter); the fp32 peak is the best of a few 2048x2048 fp32 matmuls
timed in this process with the same threads, so the share is of what this machine reached, under its load.
Peak RSS: each side alone for one iteration in a fresh (spawned) process. Usage:
  PYTHONPATH=src python bench/train_step.py [--models srresnet rrdbnet] [--pairs 5] [--threads 2]
      [--device cpu|cuda] [--formats] [--compile] [--no-rss]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch.utils.flop_counter import FlopCounterMode

from scisr.io.files import write_png16
from scisr.models import build_generator, generator_arguments
from scisr.prepare.resize import imresize
from scisr.prepare.split import pair_dirs
from scisr.train.data import PatchSampler, load_pairs
from scisr.train.settings import Settings
from scisr.train.speed import format_name
from scisr.train.trainer import Trainer

MODELS = {  # name: (generator settings, batch) as in the table
    "srresnet": ({"arch": "srresnet", "channels": 64, "blocks": 16, "global_skip": False}, 16),
    "rrdbnet": ({"arch": "rrdbnet", "channels": 64, "blocks": 23, "growth": 32}, 4),
}
LABELS = {"srresnet": "SRResNet-16x64", "rrdbnet": "RRDBNet-23"}


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


def settings(model: str, amp: str = "auto") -> dict:
    """The study's full-scale pixel-stage settings (config/study.yaml) for one generator and its batch."""
    generator, batch = MODELS[model]
    return {
        "seed": 0,
        "scale": 4,
        "generator": generator,
        "discriminator": {"arch": "vgg", "base_channels": 64, "pool": 6},
        "batch_size": batch,
        "gpus": 1,
        "patch_size": 96,
        "pixel_loss": "l1",
        "pixel": {"iterations": 10**6, "lr": 1e-4, "milestones": [], "gamma": 0.5},
        "gan": {
            "iterations": 0,
            "lr": 1e-4,
            "adv_weight": 1e-3,
            "pixel_weight": 1.0,
            "milestones": [],
            "gamma": 0.5,
            "loss": "bce",
        },
        "perceptual": {"weight": 0.0, "weights_file": None, "sha256": None, "layer": "conv5_4"},
        "val_every": 10**9,
        "checkpoint_every": 10**9,
        "ema": 0.999,
        "grad_clip": None,
        "amp": amp,
    }


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def scisr_side(
    model: str,
    split: Path,
    device: torch.device,
    fast: bool = True,
    memory_format: torch.memory_format | None = None,
    compile_: bool = False,
    amp: str = "auto",
) -> tuple[Trainer, Callable]:
    """A Trainer and one iteration of its loop (step, EMA update, scheduler step)."""
    trainer = Trainer(
        split / "train",
        split / "val",
        Path(tempfile.mkdtemp()),
        Settings.from_dict(settings(model, amp)),
        "bench",
        device,
        model,
        fast=fast,
    )
    if memory_format is not None:  # force the other layout (--formats)
        trainer.memory_format = memory_format
        trainer.generator.to(memory_format=memory_format)
        trainer.ema.model.to(memory_format=memory_format)
    if compile_:
        trainer.train_generator = torch.compile(trainer.generator)
    stage = trainer.cfg.stages[0]
    trainer.setup_stage(stage, 0)
    trainer.generator.train()

    def iteration() -> float:
        numbers = trainer.step(stage)
        trainer.ema.update(trainer.generator)
        for scheduler in trainer.schedulers.values():
            scheduler.step()
        return numbers["pixel"]

    return trainer, iteration


def anchor_side(
    model: str, split: Path, device: torch.device, weights: dict, compile_: bool = False
) -> tuple[torch.nn.Module, Callable]:
    """The BasicSR-style step: same generator and weights, NCHW fp32, L1, default Adam, batch in memory."""
    generator_settings, batch = MODELS[model]
    cfg = Settings.from_dict(settings(model))
    net = build_generator(generator_settings["arch"], **_args(model)).to(device)
    net.load_state_dict(weights)
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999))
    sampler = PatchSampler(load_pairs(split / "train", 4), 4, cfg.patch_size, seed=1)
    lr, hr = (t.to(device) for t in sampler.sample(batch))
    forward = torch.compile(net) if compile_ else net

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.l1_loss(forward(lr), hr)
        loss.backward()
        optimizer.step()
        return loss.item()

    return net, step


def generator_flops(net: torch.nn.Module, batch: int, device: torch.device) -> int:
    """Convolution and matmul FLOPs of one forward+backward of `net` on a (batch, 1, 24, 24) input."""
    x = torch.rand(batch, 1, 24, 24, device=device)
    with FlopCounterMode(display=False) as counter:
        net(x).abs().mean().backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_peak(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of the fastest of `repeats` n x n fp32 matmuls (this machine's fp32 peak, as far as torch reaches)."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _rss_child(side: str, model: str, split: str, device: str, threads: int, queue) -> None:
    torch.set_num_threads(threads)
    dev = torch.device(device)
    if side == "anchor":
        torch.manual_seed(0)
        weights = build_generator(MODELS[model][0]["arch"], **_args(model)).state_dict()
        run = anchor_side(model, Path(split), dev, weights)[1]
    else:
        run = scisr_side(model, Path(split), dev, fast=side == "scisr")[1]
    run()
    sync(dev)
    queue.put(torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else _vm_hwm())


def _vm_hwm() -> int:
    """This process's peak RSS in bytes: VmHWM (ru_maxrss would carry the parent's peak across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _args(model: str) -> dict:
    generator_settings = MODELS[model][0]
    return generator_arguments(
        generator_settings["arch"],
        in_channels=1,
        out_channels=1,
        scale=4,
        **{k: v for k, v in generator_settings.items() if k != "arch"},
    )


def peak_memory(side: str, model: str, split: Path, device: torch.device, threads: int) -> int:
    """Peak RSS (CUDA: peak allocated device memory) in bytes of one iteration of `side` in a fresh process."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_rss_child, args=(side, model, str(split), str(device), threads, queue))
    child.start()
    peak = queue.get()
    child.join()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--pairs", type=int, default=5, help="timed rounds of each side (after one warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--formats", action="store_true", help="also time SciSR in the other memory format")
    parser.add_argument("--compile", action="store_true", help="torch.compile both generators")
    parser.add_argument("--no-plain", action="store_true", help="skip the speed-choices-off SciSR side")
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-memory child processes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    else:
        machine = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.lower().startswith("model name")
            ),
            platform.processor(),
        )
    peak = matmul_peak(device)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"# torch {torch.__version__}, {machine}, {args.threads} threads, load average {load}; "
        f"fp32 peak (best 2048^2 matmul) {peak / 1e9:.0f} GFLOP/s; 1 channel, x4, 96-px HR patches; "
        f"median of {args.pairs} interleaved iterations{', torch.compile' if args.compile else ''}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as root:
        split = synthetic_split(Path(root))
        for model in args.models:
            batch = MODELS[model][1]
            sides = {"SciSR": scisr_side(model, split, device, compile_=args.compile)}
            weights = {k: v.detach().clone() for k, v in sides["SciSR"][0].generator.state_dict().items()}
            sides["anchor"] = anchor_side(model, split, device, weights, compile_=args.compile)
            if sides["SciSR"][0].precision != "fp32":
                sides["SciSR fp32"] = scisr_side(model, split, device, compile_=args.compile, amp="off")
            if not args.no_plain:
                sides["plain"] = scisr_side(model, split, device, fast=False, compile_=args.compile)
            if args.formats:
                other = (
                    torch.contiguous_format
                    if sides["SciSR"][0].memory_format == torch.channels_last
                    else torch.channels_last
                )
                sides[f"SciSR {format_name(other)}"] = scisr_side(
                    model, split, device, memory_format=other, compile_=args.compile
                )
            flops = generator_flops(sides["anchor"][0], batch, device)
            times: dict[str, list[float]] = {name: [] for name in sides}
            for round_ in range(args.pairs + 1):
                for name, (_, run) in sides.items():
                    sync(device)
                    start = time.perf_counter()
                    run()
                    sync(device)
                    if round_:  # round 0 warms up
                        times[name].append(time.perf_counter() - start)
            median = {name: statistics.median(t) for name, t in times.items()}
            trainer = sides["SciSR"][0]
            print(
                f"\n{LABELS[model]}, batch {batch}: {flops / 1e9:.1f} GFLOP per iteration (generator fwd+bwd); "
                f"SciSR generator {format_name(trainer.memory_format)}, {trainer.precision} "
                f"({trainer.precision_reason})"
            )
            for name, t in times.items():
                print(
                    f"  {name:<24} median {median[name]:.3f} s  ({' '.join(f'{x:.3f}' for x in t)})  "
                    f"{flops / median[name] / 1e9:.1f} GFLOP/s = {flops / median[name] / peak:.0%} of peak"
                )
            for name in sides:
                if name != "anchor":
                    print(f"  anchor / {name}: {median['anchor'] / median[name]:.2f}x")
            rss = (
                {}
                if args.no_rss
                else {s: peak_memory(s, model, split, device, args.threads) for s in ("anchor", "scisr")}
            )
            rows.append((model, batch, median, rss, trainer.precision))
            del sides
    what = "peak CUDA memory" if device.type == "cuda" else "peak RSS"
    print("\n| measure | anchor | SciSR | ratio (>1 = SciSR faster) |\n|---|---|---|---|")
    for model, batch, median, rss, precision in rows:
        mem = (
            f"; {what} {rss['anchor'] / 2**20:.0f} MiB" if rss else "",
            f"; {rss['scisr'] / 2**20:.0f} MiB" if rss else "",
        )
        before = f" (before: {median['anchor'] / median['plain']:.2f}x)" if "plain" in median else ""
        print(
            f"| {LABELS[model]} pixel step, batch {batch} | BasicSR-style step (NCHW fp32, L1, Adam) "
            f"{median['anchor']:.3f} s{mem[0]} | SciSR trainer step, {precision} {median['SciSR']:.3f} s{mem[1]} | "
            f"{median['anchor'] / median['SciSR']:.2f}x{before} |"
        )
        if "SciSR fp32" in median:
            print(
                f"| {LABELS[model]} pixel step, batch {batch}, where no bf16 exists | the same anchor | SciSR "
                f"trainer step, fp32 {median['SciSR fp32']:.3f} s | {median['anchor'] / median['SciSR fp32']:.2f}x |"
            )


if __name__ == "__main__":
    main()
