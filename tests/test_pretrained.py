"""Loading ESRGAN / Real-ESRGAN weights in their three key layouts, and 3-channel models on 1-channel data."""

import ast
import re
from pathlib import Path

import pytest
import torch

from scisr.models import ChannelAdapter, adapt_channels, build_generator, convert_state_dict, load_pretrained
from scisr.models.rrdbnet import RRDBNet

SRC = Path(__file__).resolve().parents[1] / "src" / "scisr"
SMALL = {"channels": 8, "blocks": 2, "growth": 4}


def _model(in_channels=3, scale=4, seed=0, **kwargs):
    torch.manual_seed(seed)
    return RRDBNet(in_channels, scale=scale, **(SMALL | kwargs)).eval()


def _same_outputs(a, b, channels=3, size=8):
    x = torch.rand(1, channels, size, size)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


# --- inverse key mappings, written here independently of the converter ---------------------------
def _to_original_layout(state, blocks, scale=4):
    """BasicSR names -> the original RRDB_ESRGAN_x4.pth layout (model.N, model.1.sub.N.RDBk.convj.0)."""
    ups = {"conv_up1": 3, "conv_up2": 6, "conv_up3": 9}
    last = 3 * (scale.bit_length() - 1)  # index of the last upsampling conv
    tail = {"conv_first": 0, "conv_hr": last + 2, "conv_last": last + 4} | ups
    out = {}
    for key, value in state.items():
        module, kind = key.rsplit(".", 1)
        if m := re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)", module):
            out[f"model.1.sub.{m[1]}.RDB{m[2]}.conv{m[3]}.0.{kind}"] = value
        elif module == "conv_body":
            out[f"model.1.sub.{blocks}.{kind}"] = value
        else:
            out[f"model.{tail[module]}.{kind}"] = value
    return out


def _to_trunk_layout(state):
    """BasicSR names -> the ESRGAN repository's RRDB_trunk layout."""
    names = {
        "conv_body": "trunk_conv",
        "conv_up1": "upconv1",
        "conv_up2": "upconv2",
        "conv_up3": "upconv3",
        "conv_hr": "HRconv",
        "conv_first": "conv_first",
        "conv_last": "conv_last",
    }
    out = {}
    for key, value in state.items():
        module, kind = key.rsplit(".", 1)
        if m := re.fullmatch(r"body\.(\d+)\.rdb(\d)\.conv(\d)", module):
            out[f"RRDB_trunk.{m[1]}.RDB{m[2]}.conv{m[3]}.{kind}"] = value
        else:
            out[f"{names[module]}.{kind}"] = value
    return out


# --- BasicSR layout -----------------------------------------------------------------------------
@pytest.mark.parametrize("wrapper", ["params_ema", "params", "state_dict", None])
def test_basicsr_layout_loads_strictly(tmp_path, wrapper):
    source = _model()
    state = source.state_dict()
    path = tmp_path / "net_g.pth"
    torch.save({wrapper: state} if wrapper else state, path)
    loaded = load_pretrained(path)
    assert isinstance(loaded, RRDBNet) and not loaded.training
    assert _same_outputs(source, loaded)


def test_params_ema_is_preferred_over_params(tmp_path):
    ema, raw = _model(seed=1), _model(seed=2)
    path = tmp_path / "net_g.pth"
    torch.save({"params": raw.state_dict(), "params_ema": ema.state_dict()}, path)
    assert _same_outputs(ema, load_pretrained(path))


def test_into_a_given_model_and_dataparallel_prefix(tmp_path):
    source = _model()
    path = tmp_path / "g.pt"
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, path)
    target = _model(seed=5)
    assert load_pretrained(path, model=target) is target
    assert _same_outputs(source, target)


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "scale"), [(3, 3, 2), (1, 1, 2), (1, 1, 4), (3, 3, 8), (1, 3, 4)]
)
def test_shape_is_inferred_from_the_file(tmp_path, in_channels, out_channels, scale):
    source = _model(in_channels, scale, out_channels=out_channels, blocks=3)
    path = tmp_path / "w.pth"
    torch.save({"params_ema": source.state_dict()}, path)
    loaded = load_pretrained(path)
    assert (loaded.in_channels, loaded.out_channels, loaded.scale) == (in_channels, out_channels, scale)
    assert (loaded.conv_first.out_channels, len(loaded.body), loaded.body[0].rdb1.conv1.out_channels) == (8, 3, 4)
    assert _same_outputs(source, loaded, channels=in_channels)


# --- the two old ESRGAN layouts ---------------------------------------------------------------
def test_original_esrgan_layout_loads_strictly(tmp_path):
    source = _model(blocks=2)
    old = _to_original_layout(source.state_dict(), blocks=2)
    for key in [
        "model.0.weight",
        "model.1.sub.0.RDB1.conv1.0.weight",
        "model.1.sub.1.RDB3.conv5.0.bias",
        "model.1.sub.2.weight",
        "model.3.weight",
        "model.6.bias",
        "model.8.weight",
        "model.10.bias",
    ]:
        assert key in old
    path = tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(old, path)
    loaded = load_pretrained(path)
    assert len(loaded.body) == 2 and loaded.scale == 4
    assert _same_outputs(source, loaded)
    assert set(convert_state_dict(old)) == set(source.state_dict())


def test_original_layout_at_scale_8(tmp_path):
    source = _model(scale=8)
    old = _to_original_layout(source.state_dict(), blocks=2, scale=8)
    assert {"model.9.weight", "model.11.weight", "model.13.bias"} <= set(old)
    path = tmp_path / "old_x8.pth"
    torch.save(old, path)
    loaded = load_pretrained(path)
    assert loaded.scale == 8 and _same_outputs(source, loaded)


def test_rrdb_trunk_layout_loads_strictly(tmp_path):
    source = _model(blocks=2)
    mid = _to_trunk_layout(source.state_dict())
    for key in [
        "conv_first.weight",
        "RRDB_trunk.0.RDB1.conv1.weight",
        "RRDB_trunk.1.RDB3.conv5.bias",
        "trunk_conv.weight",
        "upconv1.weight",
        "upconv2.bias",
        "HRconv.weight",
        "conv_last.bias",
    ]:
        assert key in mid
    path = tmp_path / "RRDB_trunk.pth"
    torch.save(mid, path)
    assert _same_outputs(source, load_pretrained(path))


# --- clear errors ------------------------------------------------------------------------------
def test_wrong_shapes_name_the_file_and_the_key(tmp_path):
    path = tmp_path / "too_wide.pth"
    torch.save(_model(channels=16).state_dict(), path)
    with pytest.raises(ValueError, match=r"too_wide\.pth.*shape.*conv_first\.weight"):
        load_pretrained(path, model=_model(channels=8))


def test_missing_and_unexpected_keys_name_the_file(tmp_path):
    state = _model().state_dict()
    del state["conv_hr.bias"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"broken\.pth.*missing keys: conv_hr\.bias.*unexpected keys: extra"):
        load_pretrained(path)
    loaded = load_pretrained(path, strict=False)  # what fits is loaded
    assert torch.equal(loaded.conv_first.weight, state["conv_first.weight"])


def test_not_an_rrdbnet_or_not_weights_or_absent(tmp_path):
    srresnet = tmp_path / "srresnet.pt"
    torch.save(build_generator("srresnet", channels=8, blocks=1).state_dict(), srresnet)
    with pytest.raises(ValueError, match=r"srresnet\.pt.*RRDBNet"):
        load_pretrained(srresnet)
    loaded = load_pretrained(srresnet, model=build_generator("srresnet", channels=8, blocks=1), arch="srresnet")
    assert loaded.conv_last.out_channels == 1
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pth"):
        load_pretrained(garbage)
    with pytest.raises(FileNotFoundError, match="never downloads"):
        load_pretrained(tmp_path / "RealESRGAN_x4plus.pth")


def test_torch_load_is_only_called_with_weights_only():
    calls = 0
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                calls += 1
                flags = {k.arg: k.value for k in node.keywords}
                assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, (
                    f"{path}:{node.lineno}: torch.load without weights_only=True"
                )
    assert calls >= 1
    models = "\n".join(p.read_text() for p in (SRC / "models").glob("*.py"))
    assert not re.search(r"urlopen|requests|torch\.hub|load_state_dict_from_url|urllib", models)


# --- 3-channel models on 1-channel data -------------------------------------------------------
def test_adapter_repeats_in_and_averages_out():
    model = _model(3)
    adapted = adapt_channels(model, 1)
    assert isinstance(adapted, ChannelAdapter)
    x = torch.rand(2, 1, 8, 6)
    with torch.no_grad():
        out = adapted(x)
        expected = model(x.repeat(1, 3, 1, 1)).mean(dim=1, keepdim=True)
    assert out.shape == (2, 1, 32, 24)
    assert torch.allclose(out, expected)
    rgb = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(adapted(rgb), model(rgb))
    with pytest.raises(ValueError, match="2 channels"):
        adapted(torch.rand(1, 2, 8, 8))


def test_adapt_channels_returns_matching_models_unchanged():
    rgb, gray = _model(3), _model(1)
    assert adapt_channels(rgb, 3) is rgb and adapt_channels(gray, 1) is gray
    srresnet = build_generator("srresnet", in_channels=3, channels=8, blocks=1)  # no in_channels attribute
    assert isinstance(adapt_channels(srresnet, 1), ChannelAdapter)
    with pytest.raises(ValueError, match="3-channel"):
        adapt_channels(gray, 3)
