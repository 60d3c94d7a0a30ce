"""Tiled inference speed against a Real-ESRGAN-style anchor, and `scisr upscale`'s peak memory by image size.

(a) anchor: the algorithm of Real-ESRGAN's `tile_process` (realesrgan/utils.py, RealESRGANer), written here
    from it step by step (not its code): the whole LR image moved to the device first (pre_process; pre_pad
    0, no mod pad at x4); tiles_x = ceil(W / tile), tiles_y = ceil(H / tile); each tile [x*tile, min((x+1)*tile,
    W)) read with `tile_pad` = 10 px more on every side that has image (clipped at the borders), as a view of
    the device image; run one at a time in the network's default NCHW layout, fp32; the output's padded border
    cropped off and the rest pasted without blending into a zeroed full-size output on the device; then
    `.float().cpu()`. Differences: `inference_mode` instead of `no_grad` (the same arithmetic, less bookkeeping)
    and no `clamp_(0, 1)` (compared unclipped, as SciSR's output). SciSR: `scisr.tiling.upscale_tiled` (fewest
    evenly spread tiles of at most `tile`, overlap from the measured receptive field, blended, float32,
    channels_last on CPU). Both run the same weights on the same image, interleaved in one process; the
    script prints MP/s (output megapixels per second, median of the repeats), the ratio SciSR / anchor, the
    peak RSS increase of each call over the process's resident size before it (sampled every 2 ms), and each
    method's largest difference from whole-image inference. "SciSR tile+2pad" gives SciSR the anchor's largest
    possible network input (tile + 2 x 10) instead of `tile`; "cold" includes measuring the receptive radius
    (what one `scisr upscale` call pays once per model); "bf16 preview" is `--precision bf16` (lossy). Last, the
    network alone: one tile of each method's size timed on its own, times the tile count, and the tiler's
    overhead (its time minus that).
    Cases (issue 14): SRResNet-16x64 512^2 -> 2048^2, LR tile 256; RRDBNet-23 192^2 -> 768^2, LR tile 96.
(b) memory: `scisr upscale` on a float32 FITS file in a fresh subprocess per case, 1024^2 -> 4096^2 and
    2048^2 -> 8192^2 outputs; peak RSS of that process (os.wait4) and end-to-end MP/s (model load,
    read, normalize, tiles, write). Target: the 8192^2 peak <= 1.5x the 4096^2 one.

Usage: python bench/upscale.py [--part a|b|all] [--quick] [--threads 2] [--repeats 3] [--device cpu] [--rrdb-memory]
--quick: (a) RRDBNet with 6 blocks instead of 23; (b) SRResNet-4x32 instead of 16x64 (memory is about the
tiler and the writers, not the network). The printed header says what ran.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from scisr.models import build_generator  # noqa: E402
from scisr.tiling import _RADIUS_CACHE, default_overlap, upscale_tiled  # noqa: E402

PAD = 10


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_during(fn):
    """(result, seconds, peak RSS increase in bytes) of fn(), RSS sampled every 2 ms in a thread."""
    base, peak, stop = rss_bytes(), [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    stop.set()
    thread.join()
    return result, seconds, max(peak[0], rss_bytes()) - base


@torch.inference_mode()
def anchor_tiles(model: torch.nn.Module, image: np.ndarray, scale: int, tile: int, device: str) -> np.ndarray:
    """Real-ESRGAN-style tiling: whole image on the device, padded tiles pasted without blending."""
    img = torch.from_numpy(image)[None, None].to(device)
    _, channels, height, width = img.shape
    output = img.new_zeros(1, channels, height * scale, width * scale)
    for y in range((height + tile - 1) // tile):
        for x in range((width + tile - 1) // tile):
            x0, x1 = x * tile, min((x + 1) * tile, width)
            y0, y1 = y * tile, min((y + 1) * tile, height)
            px0, px1, py0, py1 = max(x0 - PAD, 0), min(x1 + PAD, width), max(y0 - PAD, 0), min(y1 + PAD, height)
            out = model(img[..., py0:py1, px0:px1])
            oy, ox = (y0 - py0) * scale, (x0 - px0) * scale
            output[..., y0 * scale : y1 * scale, x0 * scale : x1 * scale] = out[
                ..., oy : oy + (y1 - y0) * scale, ox : ox + (x1 - x0) * scale
            ]
    return output[0, 0].float().cpu().numpy()


def networks(quick: bool) -> list[tuple[str, dict, int, int]]:
    rrdb_blocks = 6 if quick else 23
    return [
        ("SRResNet-16x64", {"arch": "srresnet", "channels": 64, "blocks": 16, "global_skip": False}, 512, 256),
        (f"RRDBNet-{rrdb_blocks}", {"arch": "rrdbnet", "channels": 64, "blocks": rrdb_blocks, "growth": 32}, 192, 96),
    ]


def smooth_image(size: int, seed: int = 0) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    image = gaussian_filter(np.random.default_rng(seed).random((size, size)), 2.0)
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


def part_a(args: argparse.Namespace) -> None:
    print(
        f"(a) tiled inference vs Real-ESRGAN-style anchor: device {args.device}, {torch.get_num_threads()} threads, "
        f"median of {args.repeats} interleaved repeats"
    )
    print(
        f"{'network':16} {'LR':>5} {'tile':>4} {'method':22} {'tiles':>5} {'s':>7} {'MP/s':>7} {'ratio':>6} "
        f"{'peak MiB':>8} {'max|d whole|':>12}"
    )
    for name, spec, size, tile in networks(args.quick):
        torch.manual_seed(0)
        spec = dict(spec)
        net = build_generator(spec.pop("arch"), **spec).eval().to(args.device)
        fast = copy.deepcopy(net).to(memory_format=torch.channels_last)
        image = smooth_image(size)
        t0 = time.perf_counter()
        overlap, margin = default_overlap(fast, tile)
        measure = time.perf_counter() - t0
        default_overlap(fast, tile + 2 * PAD)
        with torch.inference_mode():
            whole = (
                fast(torch.from_numpy(image)[None, None].to(args.device).contiguous(memory_format=torch.channels_last))[
                    0, 0
                ]
                .float()
                .cpu()
                .numpy()
            )

        # each method bound to this network's values now (functools.partial), not looked up when called
        def cold(fast: torch.nn.Module = fast, image: np.ndarray = image, tile: int = tile) -> np.ndarray:
            _RADIUS_CACHE.pop(fast, None)  # measured again, as a fresh `scisr upscale` call does
            return upscale_tiled(fast, image, 4, tile=tile + 2 * PAD, device=args.device)

        methods = {
            "anchor (pad 10)": partial(anchor_tiles, net, image, 4, tile, args.device),
            "SciSR tile": partial(upscale_tiled, fast, image, 4, tile=tile, device=args.device),
            "SciSR tile+2pad": partial(upscale_tiled, fast, image, 4, tile=tile + 2 * PAD, device=args.device),
            "SciSR tile+2pad, cold": cold,
            "SciSR tile, NCHW": partial(
                upscale_tiled, net, image, 4, tile=tile, device=args.device, channels_last=False
            ),
            "SciSR tile+2pad, bf16": partial(
                upscale_tiled, fast, image, 4, tile=tile + 2 * PAD, device=args.device, precision="bf16"
            ),
        }
        tiles = {"anchor (pad 10)": ((size + tile - 1) // tile) ** 2}
        from scisr.tiling import channels_last_pays, tile_count, tile_size

        tiles["SciSR tile"] = tiles["SciSR tile, NCHW"] = tile_count(size, tile, overlap) ** 2
        wide = default_overlap(fast, tile + 2 * PAD)[0]
        tiles["SciSR tile+2pad"] = tiles["SciSR tile+2pad, cold"] = tiles["SciSR tile+2pad, bf16"] = (
            tile_count(size, tile + 2 * PAD, wide) ** 2
        )
        times = {key: [] for key in methods}
        peaks = {key: 0 for key in methods}
        diffs = {}
        for _ in range(args.repeats):
            for key, fn in methods.items():
                out, seconds, peak = peak_during(fn)
                times[key].append(seconds)
                peaks[key] = max(peaks[key], peak)
                diffs[key] = float(np.abs(out - whole).max())
        mp = (size * 4) ** 2 / 1e6
        anchor_rate = mp / statistics.median(times["anchor (pad 10)"])
        for key in methods:
            rate = mp / statistics.median(times[key])
            print(
                f"{name:16} {size:>5} {tile:>4} {key:22} {tiles[key]:>5} {statistics.median(times[key]):7.2f} "
                f"{rate:7.3f} {rate / anchor_rate:6.2f} {peaks[key] / 2**20:8.1f} {diffs[key]:12.2e}"
            )
        print(
            f"{'':16} SciSR overlap {overlap} px, margin {margin:g} px (effective receptive radius, measured once "
            f"in {measure:.1f} s; in the 'cold' row only)"
        )
        # the network alone: one tile of each plan's size, times the plan's tile count
        layout = torch.channels_last if channels_last_pays(fast, torch.device(args.device)) else torch.contiguous_format
        sides = {
            "anchor (pad 10)": (net, min(size, tile + PAD) if size > tile else size, torch.contiguous_format),
            "SciSR tile+2pad": (fast, tile_size(size, tile + 2 * PAD, wide), layout),
        }
        for key, (model, side, layout) in sides.items():
            model.to(memory_format=layout)  # as upscale_tiled runs it (the anchor: NCHW)
            x = torch.from_numpy(smooth_image(side))[None, None].to(args.device).contiguous(memory_format=layout)
            with torch.inference_mode():
                model(x)
                runs = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    model(x)
                    runs.append(time.perf_counter() - start)
            network = statistics.median(runs) * tiles[key]
            print(
                f"{'':16} {key}: network alone {tiles[key]} x {side}^2 tile = {network:.2f} s of "
                f"{statistics.median(times[key]):.2f} s "
                f"(tiler overhead {statistics.median(times[key]) - network:+.2f} s)"
            )


def part_b(args: argparse.Namespace) -> None:
    from astropy.io import fits

    from scisr.card import ModelCard
    from scisr.models.registry import count_parameters, generator_arguments

    specs = (
        [("SRResNet-4x32", "srresnet", {"channels": 32, "blocks": 4, "global_skip": False})]
        if args.quick
        else [("SRResNet-16x64", "srresnet", {"channels": 64, "blocks": 16, "global_skip": False})]
    )
    if args.rrdb_memory:
        specs.append(("RRDBNet-23", "rrdbnet", {"channels": 64, "blocks": 23, "growth": 32}))
    print(
        f"\n(b) `scisr upscale` peak memory, FITS float32 in and out, one subprocess per case, "
        f"{args.threads} threads, tile {args.tile}"
    )
    print(f"{'network':16} {'output':>11} {'s':>8} {'MP/s':>7} {'peak RSS MiB':>12} {'vs 4096^2':>9}")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        for name, arch, kwargs in specs:
            torch.manual_seed(0)
            full = generator_arguments(arch, **kwargs)
            net = build_generator(arch, **full)
            folder = tmp / name
            folder.mkdir()
            torch.save(net.state_dict(), folder / "generator.pt")
            ModelCard(
                name=name,
                arch=arch,
                args=full,
                scale=4,
                channels=1,
                parameters=count_parameters(net),
                normalization={"low_percentile": 0.5, "high_percentile": 99.5, "stretch": "none", "asinh_a": 0.1},
            ).write(folder / "model.yaml")
            first = None
            for size in (1024, 2048):
                source = tmp / f"lr{size}.fits"
                if not source.exists():
                    fits.PrimaryHDU(smooth_image(size, seed=size)).writeto(source)
                command = [
                    sys.executable,
                    "-m",
                    "scisr.cli",
                    "upscale",
                    "--quiet",
                    "--model",
                    str(folder),
                    "--out",
                    str(tmp / f"out-{name}"),
                    "--threads",
                    str(args.threads),
                    "--tile",
                    str(args.tile),
                    "--device",
                    args.device,
                    str(source),
                ]
                env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
                start = time.perf_counter()
                proc = subprocess.Popen(command, env=env)
                _, status, usage = os.wait4(proc.pid, 0)
                seconds = time.perf_counter() - start
                if status:
                    print(f"{name}: upscale of {size}^2 failed with status {status}")
                    continue
                peak = usage.ru_maxrss / 1024  # KiB -> MiB
                first = first or peak
                mp = (size * 4) ** 2 / 1e6
                print(
                    f"{name:16} {size * 4:>5}^2 {'':3} {seconds:8.1f} {mp / seconds:7.3f} {peak:12.1f} "
                    f"{peak / first:9.2f}"
                )
                (tmp / f"out-{name}" / source.name).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("a", "b", "all"), default="all")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile", type=int, default=256, help="(b) LR tile size")
    parser.add_argument("--rrdb-memory", action="store_true", help="(b) also RRDBNet-23 (slow on CPU)")
    parser.add_argument("--workdir", default=None, help="(b) folder for the temporary FITS files (default: /tmp)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPUs visible, threads {args.threads}, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    )
    if args.part in ("a", "all"):
        part_a(args)
    if args.part in ("b", "all"):
        part_b(args)


if __name__ == "__main__":
    main()
