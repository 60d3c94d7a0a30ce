"""The training speed choices (scisr.train.speed) do not change what is learnt: same seed, same histories."""

import copy
import math

import pytest
import torch

from conftest import train_settings
from scisr.train.settings import Settings
from scisr.train.speed import CPU_MEMORY_FORMATS, generator_memory_format
from scisr.train.trainer import Trainer
from test_train import make_split

# both stages, EMA, clipping: every piece of machinery the speed work touched
SETTINGS = train_settings({
    "generator": {"arch": "srresnet", "channels": 8, "blocks": 2},
    "discriminator": {"arch": "vgg", "base_channels": 8, "pool": 1},
    "batch_size": 4,
    "patch_size": 32,
    "pixel": {"iterations": 30, "lr": 5e-4, "milestones": [20], "gamma": 0.5},
    "gan": {"iterations": 10, "lr": 1e-4, "adv_weight": 5e-3, "pixel_weight": 1.0, "milestones": []},
    "ema": 0.9,
    "val_every": 5,
    "checkpoint_every": 1000,
})
RRDB = {"arch": "rrdbnet", "channels": 8, "blocks": 1, "growth": 4, "global_skip": True}
COLUMNS = ("loss_pixel", "loss_adv", "loss_d", "val_rmse", "val_psnr", "val_ssim", "lr")


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    return make_split(tmp_path_factory.mktemp("split"))


def history(split, tmp_path, settings: dict, fast: bool) -> list[dict]:
    torch.set_num_threads(1)
    trainer = Trainer(split / "train", split / "val", tmp_path / ("fast" if fast else "plain"),
                      Settings.from_dict(settings), "fp", torch.device("cpu"), "speed", fast=fast)
    trainer.run()
    return trainer.progress.history


@pytest.mark.parametrize("arch", ["srresnet", "rrdbnet"])
@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_fast_path_learns_what_the_plain_path_learns(split, tmp_path, arch, grad_clip):
    settings = copy.deepcopy(SETTINGS) | {"grad_clip": grad_clip}
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
