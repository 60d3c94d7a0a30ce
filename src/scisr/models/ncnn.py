"""Read ncnn ``.param``/``.bin`` model files as data and map an ESRGAN RRDBNet's weights onto SciSR's names.

The format (Tencent/ncnn wiki, "param and model file structure"): the text ``.param`` starts with the magic
``7767517``, then ``<layer count> <blob count>``, then one line per layer: type, name, input count, output
count, the input and output blob names, and ``key=value`` parameters (``-233xx=n,v1,...,vn`` for arrays,
key ``xx``). The ``.bin`` holds, layer after layer, each layer's weights; a Convolution's weight blob starts
with a 4-byte storage tag (``0x01306B47``: fp16, padded to 4 bytes; ``0``: fp32) and is followed by its bias
as raw fp32. Nothing in either file is executed: the param file is parsed, the bin file is read as numbers.

Only what RRDBNet needs is accepted: the layer types ONNX export of ESRGAN produces (Convolution, Split,
Concat, Eltwise, BinaryOp, Interp), 3x3 stride-1 pad-1 convolutions with bias, fp16 or fp32 storage.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

MAGIC = 7767517
FP16_TAG = 0x01306B47
FP32_TAG = 0x00000000
ARRAY_KEY = -23300  # keys at or below this are arrays: key -23300 - k holds parameter k
MAX_PARAM = 32  # ncnn's NCNN_MAX_PARAM_COUNT
LEAKY_SLOPE = 0.2
RESIDUAL_SCALE = 0.2
GRAPH_TYPES = ("Input", "Convolution", "Split", "Concat", "Eltwise", "BinaryOp", "Interp")
# Convolution keys: 0 outputs, 1/11 kernel w/h, 2/12 dilation, 3/13 stride, 4/15/14/16 pad l/r/t/b,
# 5 bias_term, 6 weight_data_size, 8 int8_scale_term, 9 activation_type, 10 activation_params,
# 18 pad_value, 19 dynamic_weight
CONV_KEYS = {0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19}
LEAKY_RELU = 2  # ncnn activation_type


class NcnnFormatError(ValueError):
    """An ncnn file that is malformed or holds something SciSR does not import."""


@dataclass(frozen=True)
class NcnnLayer:
    """One layer line of a ``.param`` file."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, int | float | tuple[int | float, ...]]
    line: int

    def get(self, key: int, default: int | float | tuple | None = None) -> int | float | tuple | None:
        """Parameter `key` or `default`."""
        return self.params.get(key, default)


@dataclass(frozen=True)
class NcnnGraph:
    """A parsed ``.param`` file: its layers in file order."""

    path: Path
    layers: tuple[NcnnLayer, ...]
    blob_count: int

    def of_type(self, kind: str) -> list[NcnnLayer]:
        """The layers of type `kind`, in file order."""
        return [layer for layer in self.layers if layer.type == kind]


def _number(text: str, where: str) -> int | float:
    """An ncnn parameter value: float when written with '.', 'e' or 'E', else int."""
    try:
        return float(text) if any(c in text for c in ".eE") else int(text)
    except ValueError:
        raise NcnnFormatError(f"{where}: {text!r} is not a number") from None


def _parse_params(tokens: list[str], where: str) -> dict[int, int | float | tuple]:
    """The ``key=value`` pairs of one layer line."""
    params: dict[int, int | float | tuple] = {}
    for token in tokens:
        key_text, sep, value = token.partition("=")
        if not sep or not value:
            raise NcnnFormatError(f"{where}: {token!r} is not a key=value parameter")
        key = _number(key_text, where)
        if not isinstance(key, int):
            raise NcnnFormatError(f"{where}: parameter key {key_text!r} is not an integer")
        if key <= ARRAY_KEY:
            key = ARRAY_KEY - key
            count_text, *items = value.split(",")
            count = _number(count_text, where)
            if count != len(items):
                raise NcnnFormatError(
                    f"{where}: array parameter {token!r} announces {count} values, holds {len(items)}"
                )
            parsed: int | float | tuple = tuple(_number(item, where) for item in items)
        else:
            parsed = _number(value, where)
        if not 0 <= key < MAX_PARAM:
            raise NcnnFormatError(f"{where}: parameter key {key_text} out of range (0..{MAX_PARAM - 1})")
        if key in params:
            raise NcnnFormatError(f"{where}: parameter {key} given twice")
        params[key] = parsed
    return params


def _parse_layer(text: str, path: Path, line: int) -> NcnnLayer:
    """One layer line: type, name, counts, blob names, parameters."""
    where = f"{path}: line {line}"
    tokens = text.split()
    if len(tokens) < 4:
        raise NcnnFormatError(f"{where}: a layer line needs type, name, input and output counts; got {text!r}")
    kind, name, n_in_text, n_out_text = tokens[:4]
    n_in, n_out = _number(n_in_text, where), _number(n_out_text, where)
    if not (isinstance(n_in, int) and isinstance(n_out, int) and n_in >= 0 and n_out >= 0):
        raise NcnnFormatError(f"{where}: blob counts {n_in_text!r} {n_out_text!r} are not counts")
    blobs = tokens[4 : 4 + n_in + n_out]
    if len(blobs) < n_in + n_out or any("=" in blob for blob in blobs):
        raise NcnnFormatError(
            f"{where}: layer {name} announces {n_in} inputs and {n_out} outputs; the line names fewer blobs"
        )
    params = _parse_params(tokens[4 + n_in + n_out :], where)
    return NcnnLayer(kind, name, tuple(blobs[:n_in]), tuple(blobs[n_in:]), params, line)


def _check_blobs(layers: list[NcnnLayer], blob_count: int, path: Path) -> None:
    """Each blob is produced once before it is used, used at most once, and the header counts them all."""
    produced: set[str] = set()
    consumed: set[str] = set()
    names: set[str] = set()
    for layer in layers:
        where = f"{path}: line {layer.line}"
        if layer.name in names:
            raise NcnnFormatError(f"{where}: layer name {layer.name!r} used twice")
        names.add(layer.name)
        for blob in layer.inputs:
            if blob not in produced:
                raise NcnnFormatError(f"{where}: layer {layer.name} reads blob {blob!r} before any layer makes it")
            if blob in consumed:
                raise NcnnFormatError(f"{where}: blob {blob!r} is read by two layers (ncnn needs a Split)")
            consumed.add(blob)
        for blob in layer.outputs:
            if blob in produced:
                raise NcnnFormatError(f"{where}: blob {blob!r} is made twice")
            produced.add(blob)
    if len(produced) != blob_count:
        raise NcnnFormatError(f"{path}: line 2 announces {blob_count} blobs; the layers make {len(produced)}")


def read_param(path: str | Path) -> NcnnGraph:
    """Parse an ncnn text ``.param`` file, refusing anything malformed with the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such ncnn .param file") from None
    except UnicodeDecodeError:
        raise NcnnFormatError(f"{path}: not a text ncnn .param file (binary .param.bin is not supported)") from None
    if not lines or lines[0].strip() != str(MAGIC):
        first = lines[0].strip()[:20] if lines else ""
        raise NcnnFormatError(f"{path}: line 1: magic {first!r}, expected {MAGIC} (not an ncnn .param file)")
    header = lines[1].split() if len(lines) > 1 else []
    counts = [_number(t, f"{path}: line 2") for t in header]
    if len(counts) != 2 or not all(isinstance(c, int) and c > 0 for c in counts):
        raise NcnnFormatError(f"{path}: line 2: expected '<layer count> <blob count>', got {' '.join(header)!r}")
    layer_count, blob_count = counts
    body = [(number, text) for number, text in enumerate(lines[2:], start=3) if text.strip()]
    if len(body) != layer_count:
        raise NcnnFormatError(f"{path}: line 2 announces {layer_count} layers; the file has {len(body)} layer lines")
    layers = [_parse_layer(text, path, number) for number, text in body]
    _check_blobs(layers, blob_count, path)
    return NcnnGraph(path, tuple(layers), blob_count)


@dataclass(frozen=True)
class ConvShape:
    """What a Convolution layer computes: a 3x3 conv `inputs` -> `outputs` with bias, then maybe LeakyReLU."""

    inputs: int
    outputs: int
    leaky: bool

    def __str__(self) -> str:
        return f"3x3 conv {self.inputs}->{self.outputs}" + (" + LeakyReLU(0.2)" if self.leaky else "")


def conv_shape(layer: NcnnLayer, path: Path) -> ConvShape:
    """The shape of a Convolution layer; anything but a 3x3, stride 1, pad 1 conv with bias is refused."""
    where = f"{path}: line {layer.line} ({layer.name})"
    unknown = sorted(set(layer.params) - CONV_KEYS)
    if unknown:
        raise NcnnFormatError(f"{where}: unknown Convolution parameter(s) {unknown}")
    kw = layer.get(1, 0)
    pad = layer.get(4, 0)
    found = {
        "kernel": (kw, layer.get(11, kw)),
        "dilation": (layer.get(2, 1), layer.get(12, layer.get(2, 1))),
        "stride": (layer.get(3, 1), layer.get(13, layer.get(3, 1))),
        "padding": (pad, layer.get(15, pad), layer.get(14, pad), layer.get(16, layer.get(14, pad))),
        "bias_term": layer.get(5, 0),
        "int8_scale_term": layer.get(8, 0),
        "dynamic_weight": layer.get(19, 0),
        "pad_value": layer.get(18, 0),
    }
    wanted = {
        "kernel": (3, 3),
        "dilation": (1, 1),
        "stride": (1, 1),
        "padding": (1, 1, 1, 1),
        "bias_term": 1,
        "int8_scale_term": 0,
        "dynamic_weight": 0,
        "pad_value": 0,
    }
    for key, value in wanted.items():
        if found[key] != value:
            raise NcnnFormatError(f"{where}: {key} {found[key]}; RRDBNet import needs {value}")
    outputs, size = layer.get(0, 0), layer.get(6, 0)
    if not (
        isinstance(outputs, int) and isinstance(size, int) and outputs > 0 and size > 0 and size % (outputs * 9) == 0
    ):
        raise NcnnFormatError(f"{where}: weight_data_size {size} is not outputs ({outputs}) x inputs x 3 x 3")
    activation, slope = layer.get(9, 0), layer.get(10, ())
    if activation == LEAKY_RELU and isinstance(slope, tuple) and len(slope) == 1 and abs(slope[0] - LEAKY_SLOPE) < 1e-6:
        leaky = True
    elif activation == 0:
        leaky = False
    else:
        raise NcnnFormatError(f"{where}: activation type {activation} {slope}; RRDBNet uses none or LeakyReLU(0.2)")
    return ConvShape(size // (outputs * 9), outputs, leaky)


def read_convolutions(graph: NcnnGraph, bin_path: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight OIHW float32, bias float32) of every Convolution, read from `bin_path` in layer order.

    The file must hold exactly those blobs: a truncated file, an unknown storage tag, non-finite values
    or bytes left over are refused, naming the file, the layer and the byte offset.
    """
    bin_path = Path(bin_path)
    if not bin_path.is_file():
        raise FileNotFoundError(f"{bin_path}: no such ncnn .bin file")
    data = bin_path.read_bytes()
    offset = 0

    def take(count: int, what: str, layer: NcnnLayer) -> bytes:
        nonlocal offset
        if offset + count > len(data):
            raise NcnnFormatError(
                f"{bin_path}: truncated: {what} of layer {layer.name} ({graph.path.name} line "
                f"{layer.line}) needs bytes {offset}..{offset + count}, the file has {len(data)} "
                f"(or the .bin does not belong to {graph.path.name})"
            )
        chunk = data[offset : offset + count]
        offset += count
        return chunk

    out = []
    for layer in graph.layers:
        if layer.type not in GRAPH_TYPES:
            raise NcnnFormatError(f"{graph.path}: line {layer.line}: cannot read weights of layer type {layer.type}")
        if layer.type != "Convolution":
            continue
        shape = conv_shape(layer, graph.path)
        count = shape.outputs * shape.inputs * 9
        at = offset
        (tag,) = struct.unpack("<I", take(4, "storage tag", layer))
        if tag == FP16_TAG:
            raw = take((count * 2 + 3) // 4 * 4, "fp16 weights", layer)
            weight = np.frombuffer(raw, dtype="<f2", count=count).astype(np.float32)
        elif tag == FP32_TAG:
            weight = np.frombuffer(take(count * 4, "fp32 weights", layer), dtype="<f4").astype(np.float32)
        else:
            raise NcnnFormatError(
                f"{bin_path}: byte {at}: storage tag 0x{tag:08X} of layer {layer.name}; SciSR reads "
                f"fp16 (0x{FP16_TAG:08X}) and fp32 (0) weights, not quantized ones "
                f"(or the .bin does not belong to {graph.path.name})"
            )
        bias = np.frombuffer(take(shape.outputs * 4, "bias", layer), dtype="<f4").astype(np.float32)
        if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
            raise NcnnFormatError(f"{bin_path}: layer {layer.name} (from byte {at}) holds NaN or infinite weights")
        out.append((weight.reshape(shape.outputs, shape.inputs, 3, 3), bias))
    if offset != len(data):
        raise NcnnFormatError(
            f"{bin_path}: {len(data) - offset} bytes left after the last layer's weights "
            f"(read {offset} of {len(data)}): the .bin does not belong to {graph.path.name}"
        )
    return out


def _expect_count(graph: NcnnGraph, kind: str, count: int, blocks: int) -> None:
    found = graph.of_type(kind)
    if len(found) != count:
        raise NcnnFormatError(f"{graph.path}: {len(found)} {kind} layers; an RRDBNet of {blocks} blocks has {count}")


def _check_glue(graph: NcnnGraph, blocks: int) -> None:
    """The non-convolution layers are those of an RRDBNet: residual sums scaled by 0.2, nearest x2 upsampling."""
    path = graph.path
    _expect_count(graph, "Input", 1, blocks)
    _expect_count(graph, "Eltwise", 4 * blocks, blocks)  # one per dense block, one per RRDB
    _expect_count(graph, "Concat", 12 * blocks, blocks)  # four per dense block
    _expect_count(graph, "BinaryOp", 1, blocks)  # the trunk's long skip
    for layer in graph.of_type("Eltwise"):
        coefficients = layer.get(1, ())
        if (
            layer.get(0, 1) != 1
            or len(layer.inputs) != 2
            or not isinstance(coefficients, tuple)
            or len(coefficients) != 2
            or not np.allclose(sorted(coefficients), [RESIDUAL_SCALE, 1.0])
        ):
            raise NcnnFormatError(f"{path}: line {layer.line}: Eltwise {layer.params} is not x + 0.2 * residual")
    for layer in graph.of_type("Concat"):
        if layer.get(0, 0) != 0:
            raise NcnnFormatError(f"{path}: line {layer.line}: Concat along axis {layer.get(0)}, not channels")
    for layer in graph.of_type("BinaryOp"):
        if layer.get(0, 0) != 0 or layer.get(1, 0) != 0 or len(layer.inputs) != 2:
            raise NcnnFormatError(f"{path}: line {layer.line}: BinaryOp {layer.params} is not the sum of two blobs")
    for layer in graph.of_type("Interp"):
        if (layer.get(0), layer.get(1), layer.get(2), layer.get(3, 0), layer.get(4, 0)) != (1, 2.0, 2.0, 0, 0):
            raise NcnnFormatError(f"{path}: line {layer.line}: Interp {layer.params} is not nearest x2 upsampling")


def rrdbnet_shapes(
    blocks: int, in_channels: int, out_channels: int, channels: int, growth: int, stages: int
) -> list[tuple[str, ConvShape]]:
    """BasicSR parameter names and conv shapes of an RRDBNet, in forward order (ncnn's layer order)."""
    shapes = [("conv_first", ConvShape(in_channels, channels, False))]
    for block in range(blocks):
        for rdb in (1, 2, 3):
            for k in range(1, 6):
                shape = ConvShape(channels + (k - 1) * growth, growth if k < 5 else channels, k < 5)
                shapes.append((f"body.{block}.rdb{rdb}.conv{k}", shape))
    shapes.append(("conv_body", ConvShape(channels, channels, False)))
    shapes += [(f"conv_up{i}", ConvShape(channels, channels, True)) for i in range(1, stages + 1)]
    shapes.append(("conv_hr", ConvShape(channels, channels, True)))
    shapes.append(("conv_last", ConvShape(channels, out_channels, False)))
    return shapes


def rrdbnet_arguments_ncnn(graph: NcnnGraph) -> dict:
    """RRDBNet builder arguments read from an ncnn graph, after checking it has RRDBNet's structure."""
    path = graph.path
    for layer in graph.layers:
        if layer.type not in GRAPH_TYPES:
            srvgg = layer.type in ("PReLU", "PixelShuffle")
            hint = " (an SRVGGNetCompact such as realesr-animevideov3?)" if srvgg else ""
            raise NcnnFormatError(
                f"{path}: line {layer.line}: layer type {layer.type} is not part of an RRDBNet"
                f"{hint}; SciSR imports ESRGAN/Real-ESRGAN RRDBNet x4/x8 models only"
            )
    convs = graph.of_type("Convolution")
    stages = len(graph.of_type("Interp"))
    if stages not in (2, 3):
        raise NcnnFormatError(f"{path}: {stages} Interp (x2 upsampling) layers; RRDBNet x4 has 2, x8 has 3")
    blocks, rest = divmod(len(convs) - 4 - stages, 15)
    if rest or blocks < 1:
        raise NcnnFormatError(
            f"{path}: {len(convs)} convolutions do not make an RRDBNet (15 per block + 4 + {stages} upsampling)"
        )
    first, second, last = (conv_shape(convs[i], path) for i in (0, 1, -1))
    args = {
        "in_channels": first.inputs,
        "out_channels": last.outputs,
        "channels": first.outputs,
        "blocks": blocks,
        "growth": second.outputs,
        "scale": 2**stages,
        "global_skip": False,
    }
    expected = rrdbnet_shapes(blocks, first.inputs, last.outputs, first.outputs, second.outputs, stages)
    for layer, (name, want) in zip(convs, expected):
        found = conv_shape(layer, path)
        if found != want:
            raise NcnnFormatError(f"{path}: line {layer.line} ({layer.name}): {found}; RRDBNet's {name} is {want}")
    _check_glue(graph, blocks)
    return args


def read_rrdbnet(param_path: str | Path, bin_path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """RRDBNet builder arguments and BasicSR-named float32 weights from an ncnn ``.param``/``.bin`` pair."""
    graph = read_param(param_path)
    args = rrdbnet_arguments_ncnn(graph)
    stages = args["scale"].bit_length() - 1
    names = [
        name
        for name, _ in rrdbnet_shapes(
            args["blocks"], args["in_channels"], args["out_channels"], args["channels"], args["growth"], stages
        )
    ]
    weights = read_convolutions(graph, bin_path)
    state: dict[str, torch.Tensor] = {}
    for name, (weight, bias) in zip(names, weights, strict=True):
        for key, value in ((f"{name}.weight", weight), (f"{name}.bias", bias)):
            if key in state:
                raise NcnnFormatError(f"{param_path}: parameter {key} would be filled twice")
            state[key] = torch.from_numpy(value.copy())
    return args, state
