"""ncnn .param/.bin import: RRDBNet weights round-trip exactly; malformed files get errors naming file and line."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch
from ncnn_helpers import FP16, bin_bytes, param_text, rrdbnet_layers, run_graph, write_rrdbnet

from scisr.models.ncnn import NcnnFormatError, read_convolutions, read_param, read_rrdbnet
from scisr.models.rrdbnet import RRDBNet

SMALL = {"channels": 8, "blocks": 2, "growth": 4}


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = RRDBNet(3, 3, **SMALL)
    for p in model.parameters():  # non-trivial biases and weights, exactly representable in fp16
        p.data = (torch.randn_like(p) * 0.2).half().float()
    return model.state_dict()


@pytest.fixture
def files(tmp_path: Path, small_state) -> tuple[Path, Path]:
    return write_rrdbnet(tmp_path, small_state, SMALL["blocks"])


@pytest.mark.parametrize("fp16", [True, False])
def test_round_trip_fills_every_parameter_with_the_written_values(tmp_path, small_state, fp16):
    param, weights = write_rrdbnet(tmp_path, small_state, SMALL["blocks"], fp16=fp16)
    args, state = read_rrdbnet(param, weights)
    assert args == {
        "in_channels": 3,
        "out_channels": 3,
        "channels": 8,
        "blocks": 2,
        "growth": 4,
        "scale": 4,
        "global_skip": False,
    }
    assert state.keys() == small_state.keys()
    for key, value in small_state.items():
        assert torch.equal(state[key], value), key
    model = RRDBNet(**args).eval()
    model.load_state_dict(state, strict=True)
    graph = read_param(param)
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():  # the ncnn graph, evaluated layer by layer, computes what the mapped RRDBNet does
        assert torch.allclose(model(x), run_graph(graph, read_convolutions(graph, weights), x), atol=1e-5)


def test_a_graph_that_is_not_rrdbnet_is_refused(tmp_path, small_state):
    layers, _convs = rrdbnet_layers(small_state, SMALL["blocks"])
    layers.append(["PReLU", "PRelu_x", [layers[-1][3][0]], ["p"], "0=3"])  # a foreign layer type
    (tmp_path / "x.param").write_text(param_text(layers))
    with pytest.raises(NcnnFormatError, match=r"x\.param: line \d+: layer type PReLU is not part of an RRDBNet"):
        read_rrdbnet(tmp_path / "x.param", tmp_path / "x.bin")


def _edit_param(param: Path, old: str, new: str, count: int = 1) -> None:
    text = param.read_text()
    assert old in text
    param.write_text(text.replace(old, new, count))


def test_bad_magic_is_refused(files):
    param, weights = files
    _edit_param(param, "7767517", "7767518")
    with pytest.raises(NcnnFormatError, match=r"tiny\.param: line 1: magic '7767518', expected 7767517"):
        read_rrdbnet(param, weights)


def test_bad_counts_line_is_refused(files):
    param, weights = files
    lines = param.read_text().splitlines()
    param.write_text("\n".join([lines[0], "12 x", *lines[2:]]) + "\n")
    with pytest.raises(NcnnFormatError, match=r"tiny\.param: line 2: 'x' is not a number"):
        read_rrdbnet(param, weights)


def test_wrong_layer_count_is_refused(files):
    param, weights = files
    lines = param.read_text().splitlines()
    layers, blobs = map(int, lines[1].split())
    param.write_text("\n".join([lines[0], f"{layers + 1} {blobs}", *lines[2:]]) + "\n")
    message = rf"tiny\.param: line 2 announces {layers + 1} layers; the file has {layers}"
    with pytest.raises(NcnnFormatError, match=message):
        read_rrdbnet(param, weights)
    param.write_text("\n".join([lines[0], f"{layers} {blobs}", *lines[2:-1]]) + "\n")  # last layer dropped
    with pytest.raises(NcnnFormatError, match=rf"announces {layers} layers; the file has {layers - 1}"):
        read_rrdbnet(param, weights)


def test_wrong_shapes_are_refused(files):
    param, weights = files
    # conv_first made 3->16: the next conv no longer fits, named by its line
    _edit_param(param, "0=8 1=3 4=1 5=1 6=216", "0=16 1=3 4=1 5=1 6=432")
    with pytest.raises(
        NcnnFormatError,
        match=r"tiny\.param: line \d+ \(Conv_\d+\): 3x3 conv 8->4 .*RRDBNet's "
        r"body\.0\.rdb1\.conv1 is 3x3 conv 16->4",
    ):
        read_rrdbnet(param, weights)


def test_weight_size_that_is_not_a_kernel_is_refused(files):
    param, weights = files
    _edit_param(param, "6=216", "6=217")
    with pytest.raises(NcnnFormatError, match=r"line 4 \(Conv_0\): weight_data_size 217 is not outputs \(8\)"):
        read_rrdbnet(param, weights)


def test_truncated_bin_is_refused(files):
    param, weights = files
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(NcnnFormatError, match=r"tiny\.bin: truncated: bias of layer Conv_\d+ .* the file has"):
        read_rrdbnet(param, weights)


def test_trailing_bytes_are_refused(files):
    param, weights = files
    weights.write_bytes(weights.read_bytes() + b"\0" * 8)
    with pytest.raises(NcnnFormatError, match=r"tiny\.bin: 8 bytes left after the last layer's weights"):
        read_rrdbnet(param, weights)


def test_unknown_storage_tag_is_refused(files):
    param, weights = files
    data = bytearray(weights.read_bytes())
    assert struct.unpack("<I", data[:4])[0] == FP16
    data[:4] = struct.pack("<I", 0x000D4B38)  # ncnn's int8 tag
    weights.write_bytes(bytes(data))
    with pytest.raises(NcnnFormatError, match=r"tiny\.bin: byte 0: storage tag 0x000D4B38 of layer Conv_0"):
        read_rrdbnet(param, weights)


def test_non_finite_weights_are_refused(files):
    param, weights = files
    data = bytearray(weights.read_bytes())
    data[4:6] = b"\x00\x7c"  # fp16 +inf
    weights.write_bytes(bytes(data))
    with pytest.raises(NcnnFormatError, match="NaN or infinite"):
        read_rrdbnet(param, weights)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("0=8 1=3 4=1 5=1", "0=8 1=3 4=1 5=1 0=8", r"parameter 0 given twice"),
        ("-23310=1,2.000000e-01", "-23310=2,2.000000e-01", r"announces 2 values, holds 1"),
        ("0=8 1=3 4=1 5=1", "0=8 1=3 3=2 4=1 5=1", r"stride \(2, 2\); RRDBNet import needs \(1, 1\)"),
        ("0=8 1=3 4=1 5=1", "0=8 1=3 4=1 5=0", r"bias_term 0; RRDBNet import needs 1"),
        ("0=8 1=3 4=1 5=1", "0=8 1=3 4=1 5=1 x", r"'x' is not a key=value parameter"),
        ("1 1 data", "1 1 nowhere", r"reads blob 'nowhere' before any layer makes it"),
        ("-23301=2,2.000000e-01,1.000000e+00", "-23301=2,5.000000e-01,1.000000e+00", r"is not x \+ 0\.2 \* residual"),
        ("-23301=2,2.000000e-01,1.000000e+00", "1=2.000000e-01", r"is not x \+ 0\.2 \* residual"),
        ("-23310=1,2.000000e-01", "10=2.000000e-01", r"activation type 2 0\.2; RRDBNet uses none or LeakyReLU"),
    ],
)
def test_malformed_layer_lines_name_the_line(files, old, new, message):
    param, weights = files
    _edit_param(param, old, new)
    with pytest.raises(NcnnFormatError, match=r"tiny\.param: line \d+.*" + message):
        read_rrdbnet(param, weights)


def test_bin_of_another_model_is_refused(tmp_path, small_state):
    param, _ = write_rrdbnet(tmp_path, small_state, SMALL["blocks"])
    torch.manual_seed(1)
    other = RRDBNet(3, 3, channels=8, blocks=1, growth=4).state_dict()
    _, convs = rrdbnet_layers(other, 1)
    (tmp_path / "other.bin").write_bytes(bin_bytes(other, convs))
    message = r"other\.bin: (truncated|byte \d+: storage tag).*does not belong to tiny\.param"
    with pytest.raises(NcnnFormatError, match=message):
        read_rrdbnet(param, tmp_path / "other.bin")


def test_missing_files_say_so(tmp_path, files):
    with pytest.raises(FileNotFoundError, match=r"absent\.param: no such ncnn \.param file"):
        read_param(tmp_path / "absent.param")
    with pytest.raises(FileNotFoundError, match=r"absent\.bin: no such ncnn \.bin file"):
        read_rrdbnet(files[0], tmp_path / "absent.bin")
