"""Tile planning, partition-of-unity blending, receptive radius, and tiled == whole-image inference."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from scisr.models import build_generator
from scisr.tiling import (
    axis_weights,
    default_overlap,
    effective_radius,
    output_buffer,
    receptive_radius,
    tile_count,
    tile_size,
    tile_starts,
    upscale_tiled,
)


def smooth(shape, seed=0) -> np.ndarray:
    image = gaussian_filter(np.random.default_rng(seed).random(shape), 1.5)
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


def small(arch: str, seed: int = 0) -> torch.nn.Module:
    """A small random network of each published family, with a non-zero tail."""
    torch.manual_seed(seed)
    if arch == "srresnet":
        model = build_generator("srresnet", channels=8, blocks=2, scale=4)
    else:
        model = build_generator("rrdbnet", channels=8, blocks=1, growth=4, scale=4)
    torch.nn.init.normal_(model.conv_last.weight, std=0.05)
    return model.eval()


@pytest.mark.parametrize(
    "length,tile,overlap", [(512, 256, 32), (100, 40, 16), (97, 50, 40), (30, 64, 8), (257, 256, 0)]
)
def test_plan_is_the_fewest_tiles_with_the_overlap(length, tile, overlap):
    starts, size, count = (
        tile_starts(length, tile, overlap),
        tile_size(length, tile, overlap),
        tile_count(length, tile, overlap),
    )
    assert len(starts) == count and size <= tile and starts[0] == 0 and starts[-1] + size == length
    assert all(a + size - b >= overlap for a, b in itertools.pairwise(starts))  # neighbours overlap enough
    if count > 1:  # one tile fewer could not cover the image with that overlap
        assert (count - 1) * tile - (count - 2) * overlap < length
    steps = np.diff(starts)
    assert steps.size == 0 or steps.max() - steps.min() <= 1  # overlap spread evenly


def test_512_image_with_256_tiles_is_nine_smaller_tiles_not_nine_full_ones():
    assert tile_count(512, 256, 32) == 3 and tile_size(512, 256, 32) == 192
    assert tile_count(512, 276, 20) == 2  # Real-ESRGAN's padded tile size fits two per axis


@pytest.mark.parametrize(
    "length,tile,overlap,margin", [(100, 40, 16, 4), (97, 50, 40, 10), (300, 64, 20, 10), (50, 64, 8, 2)]
)
def test_weights_are_a_partition_of_unity_away_from_inner_edges(length, tile, overlap, margin):
    scale = 4
    starts, size = tile_starts(length, tile, overlap), tile_size(length, tile, overlap)
    weights = axis_weights(length, tile, overlap, margin, scale)
    total = np.zeros(length * scale)
    for i, (start, w) in enumerate(zip(starts, weights)):
        assert w.dtype == np.float32 and w.min() >= 0
        total[start * scale : (start + size) * scale] += w
        d = (np.arange(size * scale) + 0.5) / scale
        near_inner = ((d < margin) & (i > 0)) | ((size - d < margin) & (i < len(starts) - 1))
        assert np.all(w[near_inner] == 0)  # never trust a tile within the margin of an inner edge
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


def test_receptive_radius_from_the_conv_structure():
    # srresnet 8x2: 9x9 head 4 + 4 convs 4 + conv_body 1 + up1 1 + up2 at x2 0.5 + 9x9 tail at x4 1
    assert receptive_radius(small("srresnet")) == pytest.approx(11.5)
    # rrdbnet 1 block: head 1 + 15 dense convs + conv_body 1 + up1 at x2 0.5 + up2, hr, last at x4 0.75
    assert receptive_radius(small("rrdbnet")) == pytest.approx(18.25)


def test_effective_radius_of_bicubic_identity_is_the_bicubic_kernel():
    model = build_generator("srresnet", channels=8, blocks=2, scale=4).eval()  # zero tail + bicubic skip
    assert effective_radius(model) <= 2
    overlap, margin = default_overlap(model, 64)
    assert margin <= overlap / 2 and overlap <= 32


@pytest.mark.parametrize("arch", ["srresnet", "rrdbnet"])
@pytest.mark.parametrize("batch", [1, 4])
def test_tiled_equals_whole_image_when_the_margin_covers_the_receptive_field(arch, batch):
    torch.set_num_threads(1)
    model, image = small(arch), smooth((70, 61))[None]
    radius = math.ceil(receptive_radius(model))
    whole = upscale_tiled(model, image, 4, tile=1000, overlap=0)
    tiled = upscale_tiled(model, image, 4, tile=2 * radius + 24, overlap=2 * radius + 4, margin=radius, batch=batch)
    assert tile_count(70, 2 * radius + 24, 2 * radius + 4) > 1 and tiled.shape == (1, 280, 244)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_memmap_output_matches_memory_and_is_removed(tmp_path):
    model, image = small("srresnet"), smooth((40, 36))
    expected = upscale_tiled(model, image, 4, tile=24, overlap=12)
    with output_buffer((160, 144), beside=tmp_path / "out.fits", memmap_bytes=0) as buffer:
        assert isinstance(buffer, np.memmap) and len(list(tmp_path.iterdir())) == 1
        upscale_tiled(model, image, 4, tile=24, overlap=12, out=buffer, batch=2)
        np.testing.assert_allclose(buffer, expected, atol=1e-6)
    assert list(tmp_path.iterdir()) == []


def test_default_overlap_is_derived_and_progress_counts_tiles():
    model, image = small("srresnet"), smooth((50, 50))
    seen = []
    out = upscale_tiled(model, image, 4, tile=32, progress=lambda done, total: seen.append((done, total)))
    overlap, _ = default_overlap(model, 32)
    assert out.shape == (200, 200) and seen[-1] == (tile_count(50, 32, overlap) ** 2,) * 2


@pytest.mark.parametrize("arch", ["srresnet", "rrdbnet"])
def test_default_overlap_tiles_match_whole_image_inference(arch):
    """What `scisr upscale` and the infer rule do without an overlap: margin = effective radius, 2-px ramp."""
    torch.set_num_threads(1)
    model, image = small(arch), smooth((150, 133))[None]
    whole = upscale_tiled(model, image, 4, tile=1000, overlap=0)
    tiled = upscale_tiled(model, image, 4, tile=64)
    overlap, margin = default_overlap(model, 64)
    assert overlap <= 2 * margin + 2 and tile_count(133, 64, overlap) > 1
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
