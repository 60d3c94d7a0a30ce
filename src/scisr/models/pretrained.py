"""Load published ESRGAN / Real-ESRGAN weights (and our own) from a local file; never downloads.

Files are read with ``torch.load(..., weights_only=True)`` only. Three key layouts are understood and
converted to BasicSR's names (those of :class:`scisr.models.rrdbnet.RRDBNet`):

* BasicSR / Real-ESRGAN: ``conv_first``, ``body.N.rdb1.conv1``, ``conv_body``, ``conv_up1``, ... (as is);
* the original ESRGAN release (``RRDB_ESRGAN_x4.pth``, ``RRDB_PSNR_x4.pth``): ``model.0`` (conv_first),
  ``model.1.sub.N.RDB1.conv1.0`` (body.N.rdb1.conv1), ``model.1.sub.<blocks>`` (conv_body), then the
  upsampling convs ``model.3``, ``model.6`` [, ``model.9``], ``conv_hr`` and ``conv_last`` last;
* the later ESRGAN repository: ``RRDB_trunk.N.RDB1.conv1``, ``trunk_conv``, ``upconvK``, ``HRconv``.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from scisr.models.registry import build_generator

WRAPPERS = ("params_ema", "params", "state_dict", "generator")  # preferred first
_SHOW = 5  # how many keys an error message lists

_OLD_BLOCK = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_OLD_TRUNK_CONV = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
_OLD_TOP = re.compile(r"^model\.(\d+)\.(weight|bias)$")
_MID_BLOCK = re.compile(r"^RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.(weight|bias)$")
_MID_NAMES = {"trunk_conv": "conv_body", "HRconv": "conv_hr", "conv_first": "conv_first", "conv_last": "conv_last"}
_BODY_INDEX = re.compile(r"^body\.(\d+)\.")


def _unwrap(state: dict) -> dict:
    """The weights inside a training checkpoint's wrapper, or `state` itself."""
    for key in WRAPPERS:
        inner = state.get(key)
        if isinstance(inner, dict):
            return inner
    return state


def _convert_old(state: dict) -> dict:
    """The original ESRGAN ``model.N`` layout to BasicSR names."""
    # after the trunk (model.1): per x2 stage nearest-upsample, conv, lrelu; then conv_hr, lrelu, conv_last
    top = sorted({int(m.group(1)) for k in state if (m := _OLD_TOP.match(k))} - {0, 1})
    names = [f"conv_up{i + 1}" for i in range(len(top) - 2)] + ["conv_hr", "conv_last"]
    tail = {0: "conv_first", **dict(zip(top, names[-len(top) :]))} if top else {0: "conv_first"}
    out: dict = {}
    for key, value in state.items():
        block, trunk_conv, single = _OLD_BLOCK.match(key), _OLD_TRUNK_CONV.match(key), _OLD_TOP.match(key)
        if block:
            n, rdb, conv, kind = block.groups()
            out[f"body.{n}.rdb{rdb}.conv{conv}.{kind}"] = value
        elif trunk_conv:
            out[f"conv_body.{trunk_conv.group(2)}"] = value
        elif single and int(single.group(1)) in tail:
            out[f"{tail[int(single.group(1))]}.{single.group(2)}"] = value
        else:
            out[key] = value  # left as is: strict loading reports it
    return out


def _convert_intermediate(state: dict) -> dict:
    """The ESRGAN repository's ``RRDB_trunk`` layout to BasicSR names."""
    out: dict = {}
    for key, value in state.items():
        module, _, kind = key.rpartition(".")
        if m := _MID_BLOCK.match(key):
            n, rdb, conv, kind = m.groups()
            out[f"body.{n}.rdb{rdb}.conv{conv}.{kind}"] = value
        elif module in _MID_NAMES:
            out[f"{_MID_NAMES[module]}.{kind}"] = value
        elif m := re.fullmatch(r"upconv(\d+)", module):
            out[f"conv_up{m.group(1)}.{kind}"] = value
        else:
            out[key] = value
    return out


def convert_state_dict(state: dict) -> dict:
    """BasicSR-named weights from a loaded checkpoint: wrapper removed, ``module.`` stripped, old layouts renamed."""
    state = _unwrap(state)
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("model.1.sub.") for k in state):
        return _convert_old(state)
    if any(k.startswith("RRDB_trunk.") for k in state):
        return _convert_intermediate(state)
    return state


def rrdbnet_arguments(state: dict, *, source: str = "state dict") -> dict:
    """RRDBNet builder arguments (channels, blocks, growth, scale, in/out channels) read from tensor shapes."""
    for key in ("conv_first.weight", "conv_last.weight"):
        if key not in state:
            shown = ", ".join(list(state)[:_SHOW])
            raise ValueError(f"{source}: not RRDBNet (ESRGAN) weights: no {key!r}; keys start with {shown}")
    features, first_in = state["conv_first.weight"].shape[:2]
    out_channels = state["conv_last.weight"].shape[0]
    blocks = len({int(m.group(1)) for k in state if (m := _BODY_INDEX.match(k))})
    growth = state["body.0.rdb1.conv1.weight"].shape[0] if "body.0.rdb1.conv1.weight" in state else 32
    if "conv_up3.weight" in state:
        scale, in_channels = 8, first_in
    elif first_in == 4 * out_channels:  # Real-ESRGAN x2: pixel-unshuffled input
        scale, in_channels = 2, first_in // 4
    else:
        scale, in_channels = 4, first_in
    return {
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "channels": int(features),
        "blocks": blocks,
        "growth": int(growth),
        "scale": scale,
        "global_skip": False,
    }


def _check_fit(model: nn.Module, state: dict, source: str, strict: bool) -> None:
    """Raise a ValueError naming `source` and the first offending keys when `state` does not fit `model`."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} (file {tuple(state[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    for label, keys in (
        ("missing keys", missing if strict else []),
        ("unexpected keys", unexpected if strict else []),
        ("shape mismatches", mismatched),
    ):
        if keys:
            more = f" and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
            problems.append(f"{len(keys)} {label}: {', '.join(keys[:_SHOW])}{more}")
    if problems:
        raise ValueError(f"{source}: weights do not fit {type(model).__name__}: " + "; ".join(problems))


def load_pretrained(
    path: str | Path, *, model: nn.Module | None = None, arch: str = "rrdbnet", strict: bool = True
) -> nn.Module:
    """`model` (or an RRDBNet shaped from the file) with the weights of the local file `path`, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such weights file (SciSR never downloads weights: fetch the "
            f".pth yourself and pass its local path)"
        )
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle and zip errors differ by torch version
        raise ValueError(f"{path}: not a loadable weights file ({type(error).__name__}: {error})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    state = convert_state_dict(loaded)
    if not state:
        raise ValueError(f"{path}: holds no tensors (keys: {', '.join(map(str, list(loaded)[:_SHOW]))})")
    if model is None:
        if arch != "rrdbnet":
            raise ValueError(f"{path}: the shape of {arch!r} cannot be read from the file; pass model=")
        model = build_generator(arch, **rrdbnet_arguments(state, source=str(path)))
    _check_fit(model, state, str(path), strict)
    model.load_state_dict(state, strict=strict)
    return model.eval()
