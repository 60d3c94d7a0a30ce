"""Test-side ncnn tools written independently of scisr.models.ncnn: a writer of RRDBNet .param/.bin files
shaped like an ONNX export (Split before every reused blob), and an interpreter of the ncnn graph."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from scisr.models.rrdbnet import RRDBNet

FP16 = 0x01306B47
LEAKY = "9=2 -23310=1,2.000000e-01"


def rrdbnet_layers(state: dict[str, torch.Tensor], blocks: int, stages: int = 2) -> tuple[list, list[str]]:
    """(layers as [type, name, inputs, outputs, params], conv names in order) of RRDBNet's forward pass."""
    layers, convs, counter = [], [], iter(range(10**6))

    def blob() -> str:
        return str(next(counter))

    def conv(name: str, x: str | list[str], leaky: bool) -> str:
        if isinstance(x, list):  # concatenation first
            cat = blob()
            layers.append(["Concat", f"Concat_{cat}", x, [cat], "0=0"])
            x = cat
        w = state[f"{name}.weight"]
        out = blob()
        params = f"0={w.shape[0]} 1=3 4=1 5=1 6={w.numel()}" + (f" {LEAKY}" if leaky else "")
        layers.append(["Convolution", f"Conv_{out}", [x], [out], params])
        convs.append(name)
        return out

    def residual(res: str, x: str) -> str:
        out = blob()
        layers.append(["Eltwise", f"Add_{out}", [res, x], [out], "0=1 -23301=2,2.000000e-01,1.000000e+00"])
        return out

    layers.append(["Input", "input.1", [], ["data"], ""])
    feat = conv("conv_first", "data", False)
    x = feat
    for b in range(blocks):
        block_in = x
        for r in (1, 2, 3):
            inputs = [x]
            for k in range(1, 5):
                inputs.append(conv(f"body.{b}.rdb{r}.conv{k}", inputs[0] if k == 1 else list(inputs), True))
            x = residual(conv(f"body.{b}.rdb{r}.conv5", list(inputs), False), x)
        x = residual(x, block_in)
    body = conv("conv_body", x, False)
    out = blob()
    layers.append(["BinaryOp", f"Add_{out}", [feat, body], [out], ""])
    x = out
    for i in range(1, stages + 1):
        up = blob()
        layers.append(["Interp", f"Resize_{up}", [x], [up], "0=1 1=2.000000e+00 2=2.000000e+00"])
        x = conv(f"conv_up{i}", up, True)
    x = conv("conv_hr", x, True)
    conv("conv_last", x, False)
    return insert_splits(layers), convs


def insert_splits(layers: list) -> list:
    """ncnn reads each blob once: a blob used n > 1 times gets a Split into n renamed copies."""
    uses = Counter(b for layer in layers for b in layer[2])
    handed: Counter = Counter()
    out = []
    for kind, name, inputs, outputs, params in layers:
        renamed = []
        for b in inputs:
            renamed.append(f"{b}_splitncnn_{handed[b]}" if uses[b] > 1 else b)
            handed[b] += 1
        out.append([kind, name, renamed, outputs, params])
        out.extend(
            ["Split", f"splitncnn_{b}", [b], [f"{b}_splitncnn_{i}" for i in range(uses[b])], ""]
            for b in outputs
            if uses[b] > 1
        )
    return out


def param_text(layers: list) -> str:
    """The .param text of `layers`."""
    blobs = {b for layer in layers for b in layer[3]}
    lines = ["7767517", f"{len(layers)} {len(blobs)}"]
    for kind, name, inputs, outputs, params in layers:
        blobs_text = " ".join(inputs + outputs)
        lines.append(f"{kind:<24} {name:<24} {len(inputs)} {len(outputs)} {blobs_text} {params}".rstrip())
    return "\n".join(lines) + "\n"


def bin_bytes(state: dict[str, torch.Tensor], convs: list[str], fp16: bool = True) -> bytes:
    """The .bin of `convs`: storage tag, weights (fp16 or fp32), fp32 bias, per conv."""
    parts = []
    for name in convs:
        w = state[f"{name}.weight"].numpy().ravel()
        if fp16:
            parts += [struct.pack("<I", FP16), w.astype("<f2").tobytes()]
            if w.size % 2:
                parts.append(b"\0\0")
        else:
            parts += [struct.pack("<I", 0), w.astype("<f4").tobytes()]
        parts.append(state[f"{name}.bias"].numpy().astype("<f4").tobytes())
    return b"".join(parts)


def write_rrdbnet(
    folder: Path, state: dict[str, torch.Tensor], blocks: int, fp16: bool = True, stem: str = "tiny"
) -> tuple[Path, Path]:
    """Write `state` (an RRDBNet's) as ncnn files; returns (.param, .bin)."""
    layers, convs = rrdbnet_layers(state, blocks)
    param, weights = folder / f"{stem}.param", folder / f"{stem}.bin"
    param.write_text(param_text(layers))
    weights.write_bytes(bin_bytes(state, convs, fp16))
    return param, weights


def run_graph(graph, weights: list[tuple[np.ndarray, np.ndarray]], x: torch.Tensor) -> torch.Tensor:
    """Evaluate a parsed ncnn graph on `x` with ncnn's layer semantics; the last layer's output."""
    blobs: dict[str, torch.Tensor] = {}
    convs = iter(weights)
    for layer in graph.layers:
        ins = [blobs.pop(b) for b in layer.inputs]
        if layer.type == "Input":
            out = [x]
        elif layer.type == "Convolution":
            w, b = next(convs)
            y = F.conv2d(ins[0], torch.from_numpy(w), torch.from_numpy(b), padding=1)
            if layer.params.get(9, 0) == 2:
                y = F.leaky_relu(y, layer.params[10][0])
            out = [y]
        elif layer.type == "Split":
            out = [ins[0]] * len(layer.outputs)
        elif layer.type == "Concat":
            out = [torch.cat(ins, dim=1)]
        elif layer.type == "Eltwise":
            out = [sum(c * t for c, t in zip(layer.params[1], ins))]
        elif layer.type == "BinaryOp":
            out = [ins[0] + ins[1]]
        elif layer.type == "Interp":
            out = [F.interpolate(ins[0], scale_factor=2, mode="nearest")]
        else:
            raise AssertionError(f"interpreter lacks {layer.type}")
        blobs.update(zip(layer.outputs, out))
    return blobs[graph.layers[-1].outputs[0]]


def write_small_pretrained(work: Path, *, finetune: bool = False) -> Path:
    """A small random 3-channel RRDBNet x4 (8 features, 1 block, growth 4) as ncnn files in work/weights/, and a
    config file work/pretrained.yaml importing it as model `pretrained` (instead of Real-ESRGAN, whose 23
    blocks take a minute on the tiny test sets); `finetune` adds `mri_ftp`, it fine-tuned on mri."""
    torch.manual_seed(0)
    sizes = {"channels": 8, "blocks": 1, "growth": 4}
    (work / "weights").mkdir(parents=True, exist_ok=True)
    param, weights = write_rrdbnet(
        work / "weights", RRDBNet(3, 3, **sizes).state_dict(), sizes["blocks"], stem="small-rrdbnet"
    )
    models = {
        "pretrained": {"import": [str(p.relative_to(work)) for p in (param, weights)], "licence": "random test weights"}
    }
    if finetune:
        models["mri_ftp"] = {
            "data": "mri",
            "init": "pretrained",
            "train": {"generator": {"arch": "rrdbnet", **sizes, "global_skip": False}},
        }
    path = work / "pretrained.yaml"
    path.write_text(yaml.safe_dump({"models": models}))
    return path
