"""Tiled inference with blended seams, model loading, and folder upscaling (bicubic and trained)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter

from scisr.infer import infer_folder, load_model, upscale
from scisr.io.files import read_png16, write_png16
from scisr.models import build_generator
from scisr.prepare.resize import imresize

RUN = {"tile": 16, "overlap": 8, "device": "cpu", "threads": 1}


def random_model(seed: int = 0) -> torch.nn.Module:
    """A small SRResNet with a non-zero tail; receptive field radius about 10 LR pixels."""
    torch.manual_seed(seed)
    model = build_generator("srresnet", channels=8, blocks=1, scale=4)
    torch.nn.init.normal_(model.conv_last.weight, std=0.05)
    return model.eval()


def smooth(shape, seed=0) -> np.ndarray:
    image = gaussian_filter(np.random.default_rng(seed).random(shape), 1.5)
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


def test_single_tile_is_the_model_output():
    model, image = random_model(), smooth((30, 26))
    with torch.no_grad():
        direct = model(torch.from_numpy(image)[None, None])[0, 0].numpy()
    np.testing.assert_allclose(upscale(model, image, 4, tile=64, overlap=16, device="cpu"), direct, atol=1e-6)


@pytest.mark.parametrize("tile,overlap", [pytest.param(50, 40, marks=pytest.mark.slow), (64, 48)])  # 50-40: ~10 s
def test_tiled_equals_whole_image(tile, overlap):
    model, image = random_model(), smooth((100, 90))
    whole = upscale(model, image, 4, tile=1000, overlap=0, device="cpu")
    tiled = upscale(model, image, 4, tile=tile, overlap=overlap, device="cpu")
    assert tiled.shape == (400, 360)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


class OffsetPerTile(torch.nn.Module):
    """Bicubic upsampling plus a different constant for every call: hard-pasted tiles would show steps."""

    def __init__(self) -> None:
        super().__init__()
        self.rng = np.random.default_rng(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
        return up + float(self.rng.uniform(-1, 1))


def test_blending_has_no_seams():
    image = smooth((80, 80))
    model = OffsetPerTile()
    tiled = upscale(model, image, 4, tile=32, overlap=16, device="cpu")
    whole = F.interpolate(torch.from_numpy(image)[None, None], scale_factor=4, mode="bicubic", align_corners=False)[
        0, 0
    ].numpy()
    offset = tiled - whole  # a blend of per-tile constants in [-1, 1]
    steps = max(np.abs(np.diff(offset, axis=0)).max(), np.abs(np.diff(offset, axis=1)).max())
    assert steps < 0.1  # a pasted seam would jump by up to 2; the cosine ramp spreads it over 32 px


def make_lr_folder(folder, shapes):
    for i, shape in enumerate(shapes):
        write_png16(folder / f"img{i}.png", smooth(shape, seed=i))


def test_infer_folder_bicubic(tmp_path):
    make_lr_folder(tmp_path / "LR", [(16, 20), (24, 24)])
    out = tmp_path / "out"
    write_png16(out / "stale.png", np.zeros((4, 4)))
    infer_folder(tmp_path / "LR", out, generator=None, card=None, scale=4, **RUN)  # bicubic
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png"]
    with Image.open(out / "img0.png") as im:
        assert im.size == (80, 64) and np.asarray(im).dtype == np.uint16
    expected = np.clip(imresize(read_png16(tmp_path / "LR" / "img0.png"), 4), 0, 1)
    np.testing.assert_allclose(read_png16(out / "img0.png"), expected, atol=1 / 65535)


@pytest.fixture(scope="module")
def trained(tiny_model):
    """The session's tiny trained model (conftest.tiny_model): its generator and card."""
    return {"generator": tiny_model["generator"], "card": tiny_model["card"]}


def test_infer_folder_with_trained_model(trained, tmp_path):
    make_lr_folder(tmp_path / "LR", [(30, 20), (12, 12)])
    infer_folder(tmp_path / "LR", tmp_path / "out", **trained, scale=4, **RUN)
    assert read_png16(tmp_path / "out" / "img0.png").shape == (120, 80)
    assert read_png16(tmp_path / "out" / "img1.png").shape == (48, 48)
    with pytest.raises(ValueError, match="x4"):
        infer_folder(tmp_path / "LR", tmp_path / "out2", **trained, scale=2, **RUN)
    with pytest.raises(ValueError, match=r"both generator.*and card"):
        infer_folder(tmp_path / "LR", tmp_path / "out3", generator=trained["generator"], card=None, scale=4, **RUN)


def test_load_model_is_strict(trained, tmp_path):
    model = load_model(trained["generator"], trained["card"], "cpu")
    assert not model.training
    state = torch.load(trained["generator"], weights_only=True)
    state.pop("conv_last.bias")
    torch.save(state, tmp_path / "generator.pt")
    with pytest.raises(RuntimeError, match=r"(?s)generator.pt: weights do not fit.*conv_last.bias"):
        load_model(tmp_path / "generator.pt", trained["card"], "cpu")
