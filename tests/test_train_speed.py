"""The training speed choices (scisr.train.speed) do not change what is learnt: same seed, same histories."""

import copy
import math

import pytest
import torch
from conftest import tiny_settings
from train_helpers import make_split

from scisr.train.settings import Settings
from scisr.train.speed import CPU_MEMORY_FORMATS, generator_memory_format
from scisr.train.trainer import Trainer

# both stages, EMA, clipping: every piece of machinery the speed work touched
SETTINGS = tiny_settings(
    {
        "generator": {"blocks": 2},
        "pixel": {"iterations": 30, "lr": 5e-4, "milestones": [20], "gamma": 0.5},
        "gan": {"iterations": 10, "lr": 1e-4, "adv_weight": 5e-3, "pixel_weight": 1.0, "milestones": []},
        "ema": 0.9,
        "val_every": 5,
        "checkpoint_every": 1000,
    }
)
RRDB = {"arch": "rrdbnet", "channels": 8, "blocks": 1, "growth": 4, "global_skip": True}
COLUMNS = ("loss_pixel", "loss_adv", "loss_d", "val_rmse", "val_psnr", "val_ssim", "lr")


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return make_split(tmp_path_factory.mktemp("split"))


def history(split, tmp_path, settings: dict, fast: bool) -> list[dict]:
    torch.set_num_threads(1)
    trainer = Trainer(
        split / "train",
        split / "val",
        tmp_path / ("fast" if fast else "plain"),
        Settings.from_dict(settings),
        "fp",
        torch.device("cpu"),
        "speed",
        fast=fast,
    )
    trainer.run()
    return trainer.progress.history


@pytest.mark.parametrize("arch", ["srresnet", "rrdbnet"])
@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_fast_path_learns_what_the_plain_path_learns(split, tmp_path, arch, grad_clip):
    # in fp32: bf16 rounding (test_bf16_training_follows_the_fp32_curves) would swamp the float-order differences
    settings = copy.deepcopy(SETTINGS) | {"grad_clip": grad_clip, "amp": "off"}
    if arch == "rrdbnet":
        settings["generator"] = RRDB
    plain, fast = history(split, tmp_path, settings, False), history(split, tmp_path, settings, True)
    assert [row["iteration"] for row in fast] == [row["iteration"] for row in plain] == [0, *range(5, 41, 5)]
    worst = dict.fromkeys(COLUMNS, 0.0)
    for a, b in zip(plain, fast, strict=True):
        for key in COLUMNS:
            if not math.isnan(a[key]):
                worst[key] = max(worst[key], abs(a[key] - b[key]) / max(abs(a[key]), 1e-12))
    # float rounding only: the pixel loss, the validation scores and the learning rate agree to 1e-5; the two
    # networks of the GAN stage feed each other's rounding back (1e-5 relative after 10 GAN steps measured)
    tolerance = dict.fromkeys(COLUMNS, 1e-5) | {"loss_adv": 1e-4, "loss_d": 1e-4}
    assert all(worst[k] < tolerance[k] for k in COLUMNS), f"{arch}: relative differences {worst}"
    # and the histories moved: training changed the weights
    assert fast[-1]["val_rmse"] != fast[0]["val_rmse"]


def test_memory_format_by_architecture():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    # on CPU the measured per-architecture table decides (bench/train_step.py --formats); unknown ones and
    # every network on CUDA run channels_last
    for arch, memory_format in CPU_MEMORY_FORMATS.items():
        assert generator_memory_format(arch, cpu) == memory_format
        assert generator_memory_format(arch, cuda) == torch.channels_last
    assert set(CPU_MEMORY_FORMATS) == {"srresnet", "rrdbnet"}
    assert generator_memory_format("newnet", cpu) == torch.channels_last
    assert generator_memory_format("rrdbnet", cpu, fast=False) == torch.channels_last


def test_bf16_training_follows_the_fp32_curves(split, tmp_path):
    """bf16 autocast (amp: bf16; `auto` picks it on CPUs with AVX512-BF16 or AMX) learns what fp32 learns: on the
    same seed, the pixel loss curve stays within 1% and the validation RMSE (always computed in fp32) within 0.5%
    of the fp32 run's (measured on this tiny run: at most 0.005% and 0.003%; bench/bf16_quality.py compares the
    default study's model over seeds)."""
    fp32 = history(split, tmp_path / "fp32", copy.deepcopy(SETTINGS) | {"amp": "off"}, True)
    bf16 = history(split, tmp_path / "bf16", copy.deepcopy(SETTINGS) | {"amp": "bf16"}, True)
    loss = max(
        abs(a["loss_pixel"] - b["loss_pixel"]) / a["loss_pixel"]
        for a, b in zip(fp32, bf16, strict=True)
        if not math.isnan(a["loss_pixel"])
    )
    val = max(abs(a["val_rmse"] - b["val_rmse"]) / a["val_rmse"] for a, b in zip(fp32, bf16, strict=True))
    assert loss < 0.01 and val < 0.005, f"bf16 vs fp32: pixel loss {loss:.3%}, val RMSE {val:.3%}"
    assert bf16[-1]["val_rmse"] != fp32[-1]["val_rmse"]  # it did run in another precision
    assert fp32[-1]["val_rmse"] < fp32[0]["val_rmse"] and bf16[-1]["val_rmse"] < bf16[0]["val_rmse"]


def test_amp_auto_uses_bf16_only_where_the_hardware_has_it(monkeypatch):
    from scisr.models import device as devices
    from scisr.train.speed import amp_choice

    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "_cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    dtype, reason = amp_choice("auto", cpu)
    assert dtype == torch.bfloat16 and "avx512_bf16" in reason
    monkeypatch.setattr(devices, "_cpu_flags", lambda: {"avx2", "amx_bf16", "amx_tile"})
    assert amp_choice("auto", cpu)[0] == torch.bfloat16
    monkeypatch.setattr(devices, "_cpu_flags", lambda: {"avx2", "fma"})
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    dtype, reason = amp_choice("auto", cpu)
    assert dtype is None and reason.startswith("fp32: this CPU has no AVX512-BF16 or AMX")
    assert amp_choice("off", cpu) == (None, "fp32: amp is off")
    dtype, reason = amp_choice("bf16", cpu)  # forced: said, including that it will be emulated
    assert dtype == torch.bfloat16 and "no AVX512-BF16" in reason


def test_the_model_card_records_the_precision_and_why(split, tmp_path):
    from train_helpers import job

    from scisr.card import ModelCard
    from scisr.train import train

    settings = copy.deepcopy(SETTINGS) | {"amp": "off"}
    settings["pixel"] = {**settings["pixel"], "iterations": 2, "milestones": []}
    settings["gan"] = {**settings["gan"], "iterations": 0}
    train(job(split, tmp_path / "out", tmp_path / "ckpt", settings))
    card = ModelCard.read(tmp_path / "out" / "model.yaml")
    assert card.training["precision"] == "fp32" and card.training["precision_reason"] == "fp32: amp is off"
