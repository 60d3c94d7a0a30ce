"""Tiled inference that scales: fewest overlapping tiles, blended seams, float32, bounded memory.

Plan. Along each axis the image is covered by the fewest tiles of at most `tile` LR pixels whose
neighbours overlap by at least `overlap`: n = ceil((L - overlap) / (tile - overlap)) tiles (one when
the image fits), all of the same size t = ceil((L + (n - 1) * overlap) / n) <= tile, starts spread
evenly. Every tile has the same shape, so tiles are batched and the network sees one input shape.

Blend. Per axis the tile weights form a partition of unity: each seam is a raised-cosine ramp
centred in its overlap that stays `margin` LR pixels away from both tiles' edges (and out of the
next seam's ramp), so a tile gives weight 0 within `margin` of its inner edges. The 2-D weight is the
outer product, so the output is a plain weighted sum (no weight map, no division). A pixel's value
only comes from tiles in which it lies at least `margin` LR pixels from an inner edge; when `margin` >=
the network's receptive radius the tiled output equals the whole-image output up to float rounding.

Receptive radius. `receptive_radius` is exact: the sum over the network's convolutions of their
reach (kernel//2 x dilation) divided by the upsampling factor at that convolution (measured with
forward hooks), which is the longest path through SRResNet's residual blocks and RRDBNet's dense
blocks alike. For deep nets it is far larger than what matters (RRDBNet-23: 348.25 LR px), so the
default overlap uses `effective_radius`: the smallest box around an input pixel holding all
but `tol` (1e-4) of the output change when that pixel is raised by 1 (an impulse response,
measured once per model on a mid-grey noise image and cached). By default the margin is that radius and
the overlap twice it plus a 2-pixel ramp (capped at half the tile): exactness comes from the margin (the
tiles agree within the tolerance wherever both have weight), so a wider ramp would only add LR pixels of
work — and a tile — where the anchor's tiling needs none (bench/upscale.py). An explicit overlap
without a margin gets margin = overlap/4 (the ramp spans the middle half of the overlap).

Memory. The LR image stays on the host; only the batch of tiles being processed goes to the device.
The output is accumulated in float32 in a caller-supplied array or, above `memmap_bytes`, in a
numpy memmap in a temporary file (`output_buffer`); finished rows are flushed and dropped from the
page tables as tile rows complete, so peak RSS does not grow with the image.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import tempfile
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

EFFECTIVE_TOL = 1e-4
RAMP = 2  # LR px of blending between two tiles' margins in the default overlap
MEMMAP_BYTES = 256 * 2**20  # outputs larger than this go to a memory-mapped temporary file
PRECISIONS = ("fp32", "bf16")  # bf16: lossy previews only (the network under autocast)
_RADIUS_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of the fewest `tile_size(...)`-long tiles covering `length` with >= `overlap` overlap, evenly spread."""
    size = tile_size(length, tile, overlap)
    count = tile_count(length, tile, overlap)
    if count == 1:
        return [0]
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


def tile_count(length: int, tile: int, overlap: int) -> int:
    """How many tiles of at most `tile` px with >= `overlap` px overlap cover `length` px."""
    if not 0 <= overlap < tile:
        raise ValueError(f"need 0 <= overlap < tile, got overlap {overlap}, tile {tile}")
    return 1 if length <= tile else math.ceil((length - overlap) / (tile - overlap))


def tile_size(length: int, tile: int, overlap: int) -> int:
    """The common size of the tiles along an axis: the smallest that still leaves `overlap` between neighbours."""
    count = tile_count(length, tile, overlap)
    return length if count == 1 else min(tile, math.ceil((length + (count - 1) * overlap) / count))


def axis_weights(length: int, tile: int, overlap: int, margin: float, scale: int) -> list[np.ndarray]:
    """Per-tile 1-D float32 weights (in output pixels) along an axis; they sum to 1 at every output pixel.

    Each seam ramps around the middle of its overlap, never within `margin` LR px of either tile's edge
    and never into the next seam's ramp, so weights multiply to a partition of unity.
    """
    starts, size = tile_starts(length, tile, overlap), tile_size(length, tile, overlap)
    centres = (np.arange(size * scale) + 0.5) / scale  # output pixel centres, LR units from the tile's start
    seams = [(starts[i + 1] + starts[i] + size) / 2 for i in range(len(starts) - 1)]
    gaps = np.diff(seams).tolist()
    weights = [np.ones(size * scale, np.float64) for _ in starts]
    for i, mid in enumerate(seams):
        room = (starts[i] + size - starts[i + 1]) / 2 - margin
        if room < 0:
            raise ValueError(f"margin {margin} is more than half the overlap of tiles at {starts[i]}, {starts[i + 1]}")
        half = min([room] + [g / 2 for g in gaps[max(0, i - 1) : i + 1]])
        for j, rising in ((i, False), (i + 1, True)):
            x = starts[j] + centres
            t = np.clip((x - mid + half) / (2 * half), 0.0, 1.0) if half > 0 else (x >= mid).astype(np.float64)
            ramp = 0.5 - 0.5 * np.cos(math.pi * t)
            weights[j] *= ramp if rising else 1.0 - ramp
    return [w.astype(np.float32) for w in weights]


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles go on an (H, W) LR image and how each tile's output is weighted."""

    height: int
    width: int
    scale: int
    tile: int
    overlap: int
    margin: float

    @property
    def ys(self) -> list[int]:
        return tile_starts(self.height, self.tile, self.overlap)

    @property
    def xs(self) -> list[int]:
        return tile_starts(self.width, self.tile, self.overlap)

    @property
    def shape(self) -> tuple[int, int]:
        """LR (height, width) of every tile."""
        return tile_size(self.height, self.tile, self.overlap), tile_size(self.width, self.tile, self.overlap)

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def receptive_radius(model: nn.Module, channels: int = 1) -> float:
    """Exact receptive radius in LR pixels: sum of each conv's reach over its upsampling factor (forward hooks)."""
    size = 16
    reach: list[float] = []

    def hook(module: nn.Module, inputs: tuple, _output: torch.Tensor) -> None:
        factor = inputs[0].shape[-1] / size
        k, d = module.kernel_size[-1], module.dilation[-1]
        reach.append((k // 2) * d / factor)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            param = next(model.parameters(), None)
            x = torch.zeros(1, channels, size, size, device=param.device if param is not None else "cpu")
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    skip = 2.0 if getattr(model, "global_skip", False) else 0.0  # bicubic kernel reach
    return max(sum(reach), skip)


def effective_radius(model: nn.Module, channels: int = 1, *, cap: int = 32, tol: float = EFFECTIVE_TOL) -> int:
    """LR radius of the box holding all but `tol` of the output change caused by a unit input impulse (cached)."""
    key = (channels, cap, tol)
    cached = _RADIUS_CACHE.setdefault(model, {})
    if key in cached:
        return cached[key]
    half = int(min(math.ceil(receptive_radius(model, channels)), cap))
    n = 2 * half + 1
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    rng = np.random.default_rng(0)
    base = torch.from_numpy(0.5 + 0.1 * rng.standard_normal((1, channels, n, n)).astype(np.float32))
    poked = base.clone()
    poked[..., half, half] += 1.0
    with torch.inference_mode():
        y = model(torch.cat([base, poked]).to(device)).double().cpu()
    s = y.shape[-1] // n
    mass = (y[1] - y[0]).abs().sum(0).numpy().reshape(n, s, n, s).sum(axis=(1, 3))
    total, radius = mass.sum(), half
    for r in range(half + 1):
        if total - mass[half - r : half + r + 1, half - r : half + r + 1].sum() <= tol * total:
            radius = r
            break
    cached[key] = radius
    return radius


def default_overlap(model: nn.Module, tile: int, channels: int = 1) -> tuple[int, float]:
    """(overlap, margin) in LR px: margin = the effective radius, overlap = 2 margins + a 2-px ramp, <= tile/2."""
    radius = effective_radius(model, channels, cap=max(1, min(tile // 4, 32)))
    overlap = min(2 * radius + RAMP, max(2, tile // 2))
    return overlap, min(float(radius), overlap / 2)


def channels_last_pays(model: nn.Module, device: torch.device) -> bool:
    """Whether to feed the model NHWC tensors: on CPU, except RRDBNet (its dense concatenations; bench/upscale.py)."""
    inner = getattr(model, "model", model)  # through a ChannelAdapter
    return device.type == "cpu" and type(inner).__name__ != "RRDBNet"


@contextlib.contextmanager
def output_buffer(
    shape: tuple[int, ...], beside: str | os.PathLike | None = None, memmap_bytes: int = MEMMAP_BYTES
) -> Iterator[np.ndarray]:
    """A zeroed float32 array of `shape`: in memory, or a memmap in a temp file in `beside`'s folder (deleted after)."""
    nbytes = int(np.prod(shape)) * 4
    if nbytes <= memmap_bytes:
        yield np.zeros(shape, np.float32)
        return
    folder = Path(beside).parent if beside is not None else Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".scisr-", suffix=".f32", dir=folder)
    os.close(fd)
    try:
        array = np.memmap(name, dtype=np.float32, mode="w+", shape=shape)
        try:
            yield array
        finally:
            del array
    finally:
        Path(name).unlink(missing_ok=True)


def release_rows(array: np.ndarray, stop: int) -> None:
    """Write rows [0, stop) of a memmap'd (C, H, W) or (H, W) array to disk and drop their pages from RSS."""
    raw = getattr(array, "_mmap", None)
    if not isinstance(array, np.memmap) or raw is None or stop <= 0:
        return
    row_bytes = array.strides[-2]
    planes = array.shape[0] if array.ndim == 3 else 1
    plane_bytes = array.strides[0] if array.ndim == 3 else 0
    page = mmap.PAGESIZE
    for p in range(planes):
        begin = p * plane_bytes + array.offset
        end = begin + stop * row_bytes
        begin_page, end_page = -(-begin // page) * page, end // page * page
        if end_page > begin_page:
            raw.flush(begin_page, end_page - begin_page)
            raw.madvise(mmap.MADV_DONTNEED, begin_page, end_page - begin_page)


def _weights_for(plan: TilePlan) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return (
        axis_weights(plan.height, plan.tile, plan.overlap, plan.margin, plan.scale),
        axis_weights(plan.width, plan.tile, plan.overlap, plan.margin, plan.scale),
    )


@torch.inference_mode()
def upscale_tiled(
    model: nn.Module,
    image: np.ndarray,
    scale: int,
    *,
    tile: int,
    overlap: int | None = None,
    margin: float | None = None,
    batch: int = 1,
    device: str | torch.device = "cpu",
    out: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    channels_last: bool | None = None,
    precision: str = "fp32",
) -> np.ndarray:
    """Upscale a (H, W) or (C, H, W) image in blended LR tiles; float32, unclipped, written into `out` if given.

    `overlap` None picks `default_overlap` (margin = effective radius); else `margin` None is a quarter of the
    overlap (the zero-weight band at each inner tile edge, LR px). `progress(done, total)` is called with tile counts
    after each batch. `channels_last` None feeds NHWC tensors where `channels_last_pays`. `precision` "bf16" runs the
    network under bf16 autocast (previews: about twice as fast where the CPU or GPU has bf16, but lossy; blending and
    the output stay float32).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    array = np.asarray(image, dtype=np.float32)
    chw = array if array.ndim == 3 else array[None]
    channels, height, width = chw.shape
    if overlap is None:
        overlap, auto_margin = default_overlap(model, tile, channels)
        margin = auto_margin if margin is None else margin
    overlap = min(overlap, tile - 1)
    if margin is None:
        margin = overlap / 4
    plan = TilePlan(height, width, scale, tile, overlap, margin)
    dev = torch.device(device)
    if channels_last is None:
        channels_last = channels_last_pays(model, dev)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if dev.type == "cpu":
        model.to(memory_format=memory_format)  # weights in the same layout as the tiles (in place, once)
    shape = (channels, height * scale, width * scale)
    if out is None:
        out = np.zeros(shape if array.ndim == 3 else shape[1:], np.float32)
    view = out if out.ndim == 3 else out[None]
    if view.shape != shape:
        raise ValueError(f"output buffer has shape {out.shape}, expected {shape}")
    view[...] = 0.0
    wys, wxs = _weights_for(plan)
    th, tw = plan.shape
    cache: dict[tuple[int, int], np.ndarray] = {}

    def weight(iy: int, ix: int) -> np.ndarray:
        key = (_class(wys, iy), _class(wxs, ix))
        if key not in cache:
            cache[key] = np.outer(wys[iy], wxs[ix])
        return cache[key]

    ys, xs = plan.ys, plan.xs
    jobs = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    done = 0
    for first in range(0, len(jobs), max(1, batch)):
        group = jobs[first : first + max(1, batch)]
        stack = np.stack([chw[:, ys[iy] : ys[iy] + th, xs[ix] : xs[ix] + tw] for iy, ix in group])
        tensor = torch.from_numpy(stack).to(dev).contiguous(memory_format=memory_format)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            result = model(tensor).float().cpu().numpy()
        for (iy, ix), tile_out in zip(group, result):
            y0, x0 = ys[iy] * scale, xs[ix] * scale
            view[:, y0 : y0 + th * scale, x0 : x0 + tw * scale] += tile_out * weight(iy, ix)
        done += len(group)
        if first + len(group) < len(jobs):  # rows above the next tile row's start are final
            release_rows(view, ys[jobs[first + len(group)][0]] * scale)
        if progress is not None:
            progress(done, len(jobs))
    return out


def _class(weights: list[np.ndarray], index: int) -> int:
    """Index of the first tile whose 1-D weights equal tile `index`'s (tiles share weights by shape and position)."""
    for j in range(index + 1):
        if j == index or np.array_equal(weights[j], weights[index]):
            return j
    return index
