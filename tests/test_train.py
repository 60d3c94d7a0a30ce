"""Two-stage training on a tiny generated split: outputs, EMA export, determinism, resume after a kill, guards."""

import copy
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from train_helpers import ESRGAN, NORMALIZATION, SETTINGS, fit, job, make_split

from scisr.card import ModelCard
from scisr.io.files import read_png16
from scisr.models import build_generator
from scisr.models.device import resolve_device
from scisr.models.vgg import VGG19Features
from scisr.train import Settings, TrainJob, losses
from scisr.train.checkpoint import load_checkpoint
from scisr.train.settings import KEYS, check_settings

TOTAL = 40
VARIANTS = {"srgan": SETTINGS, "esrgan": ESRGAN}
KILL_AT = {"srgan": 10, "esrgan": 30}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("split"))


@pytest.fixture(scope="module")
def references(split, tmp_path_factory):
    """Uninterrupted training runs by variant name, each run once; returns a function name -> work folder."""
    done: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in done:
            work = tmp_path_factory.mktemp(f"reference_{variant}")
            fit(split, work / "out", work / "ckpt", VARIANTS[variant])
            done[variant] = work
        return done[variant]

    return get


@pytest.fixture(scope="module")
def reference(references) -> Path:
    """The uninterrupted run of SETTINGS (only the original keys: the new ones take their defaults)."""
    return references("srgan")


def weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / "generator.pt", weights_only=True)


def test_outputs(reference):
    out = reference / "out"
    card = ModelCard.read(out / "model.yaml")
    model = build_generator(card.arch, **card.args)
    model.load_state_dict(weights(out), strict=True)
    assert card.parameters == sum(p.numel() for p in model.parameters())
    assert card.scale == 4 and card.channels == 1 and card.args["in_channels"] == 1 and card.name == "tiny"
    assert card.source == "trained" and card.init_from is None
    assert card.iterations == {"pixel": 30, "gan": 10}
    assert card.training_data["dataset"] == "tiny_data" and len(card.training_data["train_hr_sha256"]) == 64
    assert (card.training_data["train_images"], card.training_data["val_images"]) == (6, 2)
    assert card.normalization == NORMALIZATION
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert history["iteration"].tolist() == [0, 10, 20, 30, 40]
    assert history["stage"].tolist() == ["init", "pixel", "pixel", "pixel", "gan"]
    assert np.isfinite(history["val_rmse"]).all() and np.isfinite(history["val_psnr"]).all()
    assert history.loc[history.stage != "gan", "loss_adv"].isna().all()
    assert history.loc[0, ["loss_pixel", "lr"]].isna().all()  # the untrained network, before any step
    assert np.isfinite(history.loc[history.stage == "gan", ["loss_adv", "loss_d"]]).all().all()
    assert history["lr"].tolist()[1:] == [5e-4, 5e-4, 2.5e-4, 1e-4]  # decay after 20 iterations
    assert load_checkpoint(reference / "ckpt" / "last.pt")["progress"]["iteration"] == TOTAL
    assert history["loss_perceptual"].isna().all()
    training = card.training
    assert training["ema"] == 0.999 and training["exported_weights"] == "ema" and training["gan_loss"] == "bce"
    assert training["perceptual"] == {"weight": 0.0, "layer": None, "weights_file": None, "sha256": None}
    # amp auto: bf16 autocast exactly where the CPU has bf16 instructions, and the card says which and why
    from scisr.models.device import bf16_support

    supported, reason = bf16_support(torch.device("cpu"))
    assert training["precision"] == ("bf16" if supported else "fp32") and training["precision_reason"] == reason
    assert training["grad_clip"] is None and training["distributed"] is None
    assert (card.device, card.threads, card.gpus) == ("cpu", 1, 1) and card.device_name
    # wall time per stage: both stages took time; together, the history's last timestamp and the last save
    assert set(card.wall_seconds) == {"pixel", "gan"} and min(card.wall_seconds.values()) > 0
    assert history["seconds"].iloc[-1] <= card.total_wall_seconds < history["seconds"].iloc[-1] + 1.0
    assert card.wall_seconds["pixel"] >= history.loc[history.stage == "pixel", "seconds"].max() - 0.01


def test_exported_generator_is_the_ema(references):
    work = references("esrgan")
    card = ModelCard.read(work / "out" / "model.yaml")
    assert card.training["ema"] == 0.9 and card.training["gan_loss"] == "ragan"
    assert card.iterations == {"pixel": 20, "gan": 20}
    state = load_checkpoint(work / "ckpt" / "last.pt")
    exported = weights(work / "out")
    assert exported.keys() == state["ema"].keys()
    for key, value in exported.items():
        assert torch.equal(value, state["ema"][key]), key
    assert not all(torch.equal(v, state["generator"][k]) for k, v in exported.items())
    history = pd.read_csv(work / "out" / "history.tsv", sep="\t")
    assert np.isfinite(history.loc[history.stage == "gan", ["loss_adv", "loss_d"]]).all().all()


def test_ema_off_exports_the_trained_weights(split, tmp_path):
    settings = copy.deepcopy(SETTINGS) | {"ema": 0}
    settings["pixel"]["iterations"], settings["gan"]["iterations"] = 4, 2
    fit(split, tmp_path / "out", tmp_path / "ckpt", settings)
    state = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert "ema" not in state
    for key, value in weights(tmp_path / "out").items():
        assert torch.equal(value, state["generator"][key]), key
    assert ModelCard.read(tmp_path / "out" / "model.yaml").training["exported_weights"] == "last"


def test_same_seed_same_weights_and_changed_settings_start_fresh(split, reference, tmp_path, caplog):
    fit(split, tmp_path / "a", tmp_path / "ckpt_a", SETTINGS)
    for key, value in weights(reference / "out").items():
        assert torch.equal(value, weights(tmp_path / "a")[key]), key
    # a checkpoint written for other settings is not resumed
    other = copy.deepcopy(SETTINGS)
    other["seed"] = 1
    with caplog.at_level(logging.INFO, logger="scisr.train.trainer"):
        fit(split, tmp_path / "b", tmp_path / "ckpt_a", other)
    assert "starting fresh" in caplog.text
    assert not all(torch.equal(v, weights(tmp_path / "b")[k]) for k, v in weights(reference / "out").items())


KILLED_RUN = """
import json, sys, time
from pathlib import Path
from scisr.train import TrainJob, train, trainer
save = trainer.Trainer.save
kill_at = int(sys.argv[2])
def slow_save(self):
    save(self)
    if self.progress.iteration == kill_at:
        Path(self.checkpoint_path.parent, "saved").touch()
        time.sleep(120)  # stand-in for slow progress: the test kills us here
trainer.Trainer.save = slow_save
train(TrainJob.from_dict(json.loads(sys.argv[1])))
"""


@pytest.mark.slow  # two trainings and a killed one per variant
@pytest.mark.parametrize("variant", ["srgan", "esrgan"])
def test_resume_after_kill_matches_uninterrupted_run(split, references, variant, tmp_path, caplog):
    settings, kill_at, reference = VARIANTS[variant], KILL_AT[variant], references(variant)
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(KILLED_RUN),
            json.dumps(job(split, tmp_path / "out", ckpt, settings).to_dict()),
            str(kill_at),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while not (ckpt / "saved").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = load_checkpoint(ckpt / "last.pt")
    assert killed["progress"]["iteration"] == kill_at
    assert ("ema" in killed) and killed["progress"]["stage"] == ("pixel" if kill_at <= 20 else "gan")
    assert not (tmp_path / "out").exists()

    with caplog.at_level(logging.INFO, logger="scisr.train.trainer"):
        fit(split, tmp_path / "out", ckpt, settings)
    assert f"resuming from iteration {kill_at}" in caplog.text
    history = pd.read_csv(tmp_path / "out" / "history.tsv", sep="\t")
    expected = pd.read_csv(reference / "out" / "history.tsv", sep="\t")
    assert history["iteration"].tolist() == expected["iteration"].tolist()
    np.testing.assert_allclose(history["val_rmse"], expected["val_rmse"], rtol=1e-6)
    np.testing.assert_allclose(history["loss_d"], expected["loss_d"], rtol=1e-6)
    for key, value in weights(reference / "out").items():
        torch.testing.assert_close(weights(tmp_path / "out")[key], value, rtol=1e-6, atol=1e-7)
    final, uninterrupted = load_checkpoint(ckpt / "last.pt"), load_checkpoint(reference / "ckpt" / "last.pt")
    for part in ("generator", "discriminator", "ema"):
        for key, value in uninterrupted[part].items():
            torch.testing.assert_close(final[part][key], value, rtol=1e-6, atol=1e-7, msg=f"{part} {key}")


def test_nan_guard_keeps_last_good_checkpoint(split, tmp_path, monkeypatch):
    calls = {"n": 0}

    def poisoned(prediction, target):
        calls["n"] += 1
        loss = torch.nn.functional.l1_loss(prediction, target)
        return loss * math.nan if calls["n"] > 15 else loss

    monkeypatch.setitem(losses.PIXEL_LOSSES, "l1", poisoned)
    with pytest.raises(RuntimeError, match=r"iteration 16.*last good checkpoint"):
        fit(split, tmp_path / "out", tmp_path / "ckpt", SETTINGS)
    assert load_checkpoint(tmp_path / "ckpt" / "last.pt")["progress"]["iteration"] == 10
    assert not (tmp_path / "out").exists()


class _NanGradient(torch.autograd.Function):
    """Identity forward, NaN gradient backward: a finite loss whose gradient is poisoned."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.nan


@pytest.mark.parametrize("grad_clip", [None, 1.0])
def test_nan_guard_on_non_finite_gradient(split, tmp_path, monkeypatch, grad_clip):
    calls = {"n": 0}

    def poisoned(prediction, target):
        calls["n"] += 1
        prediction = _NanGradient.apply(prediction) if calls["n"] > 15 else prediction
        return torch.nn.functional.l1_loss(prediction, target)

    monkeypatch.setitem(losses.PIXEL_LOSSES, "l1", poisoned)
    settings = copy.deepcopy(SETTINGS) | {"grad_clip": grad_clip}
    message = "non-finite generator gradient norm at iteration 16.*last good checkpoint"
    with pytest.raises(RuntimeError, match=message):
        fit(split, tmp_path / "out", tmp_path / "ckpt", settings)
    assert load_checkpoint(tmp_path / "ckpt" / "last.pt")["progress"]["iteration"] == 10
    assert not (tmp_path / "out").exists()


def test_frequent_clipping_is_logged(split, tmp_path, caplog):
    settings = copy.deepcopy(SETTINGS) | {"grad_clip": 1e-9}
    settings["pixel"]["iterations"], settings["gan"]["iterations"] = 5, 0
    with caplog.at_level(logging.WARNING, logger="scisr.train.trainer"):
        fit(split, tmp_path / "out", tmp_path / "ckpt", settings)
    assert "clipped to grad_clip 1e-09 in 5 of 5" in caplog.text


def small_vgg_file(path: Path, layer: str = "conv2_2") -> str:
    """A torchvision-style vgg19 state dict (random features up to `layer`, dummy classifier); its sha256."""
    torch.manual_seed(0)
    state = dict(VGG19Features(layer).state_dict())
    state |= {"classifier.0.weight": torch.zeros(4, 4), "classifier.6.bias": torch.zeros(4)}
    torch.save(state, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_perceptual_stage_and_card(split, tmp_path):
    sha = small_vgg_file(tmp_path / "vgg19.pth")
    settings = copy.deepcopy(ESRGAN) | {
        "perceptual": {"weight": 0.01, "weights_file": str(tmp_path / "vgg19.pth"), "sha256": None, "layer": "conv2_2"},
    }
    settings["pixel"]["iterations"], settings["gan"]["iterations"] = 2, 3
    fit(split, tmp_path / "out", tmp_path / "ckpt", settings)
    card = ModelCard.read(tmp_path / "out" / "model.yaml")
    assert card.training["perceptual"] == {
        "weight": 0.01,
        "layer": "conv2_2",
        "weights_file": str(tmp_path / "vgg19.pth"),
        "sha256": sha,
    }
    history = pd.read_csv(tmp_path / "out" / "history.tsv", sep="\t")
    gan = history[history.stage == "gan"]
    assert len(gan) == 1 and np.isfinite(gan["loss_perceptual"]).all() and (gan["loss_perceptual"] > 0).all()
    assert history.loc[history.stage != "gan", "loss_perceptual"].isna().all()

    settings["perceptual"]["sha256"] = "f" * 64  # a wrong digest stops before anything is trained
    with pytest.raises(ValueError, match=f"expected {'f' * 64}.*got {sha}"):
        fit(split, tmp_path / "out2", tmp_path / "ckpt2", settings)
    assert not (tmp_path / "ckpt2").exists() and not (tmp_path / "out2").exists()


def test_pixel_only_and_patch_clamped(split, tmp_path, caplog):
    settings = copy.deepcopy(SETTINGS)
    settings["pixel"]["iterations"] = 5
    settings["gan"]["iterations"] = 0
    settings["patch_size"] = 128
    with caplog.at_level(logging.WARNING):
        fit(split, tmp_path / "out", tmp_path / "ckpt", settings)
    assert "patch_size 128" in caplog.text
    history = pd.read_csv(tmp_path / "out" / "history.tsv", sep="\t")
    assert history["iteration"].tolist() == [0, 5] and history["stage"].tolist() == ["init", "pixel"]


def test_settings_errors_name_the_key(split, tmp_path):
    settings = copy.deepcopy(SETTINGS)
    del settings["pixel"]["lr"]
    with pytest.raises(KeyError, match=r"pixel.lr"):
        Settings.from_dict(settings)
    settings = copy.deepcopy(SETTINGS)
    settings["patch_size"] = 30
    with pytest.raises(ValueError, match="multiple of the scale"):
        fit(split, tmp_path / "out", tmp_path / "ckpt", settings)


def test_settings_are_the_schemas_keys_without_defaults_of_their_own(root):
    cfg = Settings.from_dict(SETTINGS)  # the schema's defaults, filled in by validation
    assert (cfg.ema, cfg.grad_clip, cfg.amp, cfg.stages[1].adversarial_loss) == (0.999, None, "auto", "bce")
    assert (cfg.perceptual.weight, cfg.perceptual.weights_file, cfg.perceptual.layer) == (0.0, None, "conv5_4")
    schema = yaml.safe_load((root / "config" / "train.schema.yaml").read_text())
    assert set(KEYS) == set(schema["properties"]) | {"seed", "scale"}
    for key in KEYS:  # every key is required: none has a second default in code
        with pytest.raises(KeyError, match=f"missing key '{key}'"):
            Settings.from_dict({k: v for k, v in SETTINGS.items() if k != key})
    for block, key in (("gan", "loss"), ("perceptual", "layer"), ("pixel", "gamma")):
        changed = copy.deepcopy(SETTINGS)
        del changed[block][key]
        with pytest.raises(KeyError, match=f"missing key '{block}.{key}'"):
            Settings.from_dict(changed)


def test_settings_are_checked():
    assert Settings.from_dict(SETTINGS | {"grad_clip": 0, "ema": 0}).grad_clip is None
    assert Settings.from_dict(SETTINGS | {"pixel_loss": "mse"}).pixel_loss == "mse"
    assert Settings.from_dict(SETTINGS | {"amp": False}).amp == "off"  # YAML 1.1: `amp: off` reads as false
    assert Settings.from_dict(SETTINGS | {"amp": "off"}).amp == "off"
    bad = {
        "amp": ({"amp": "fp16"}, "amp is 'fp16'"),
        "ema": ({"ema": 1.0}, "ema must be in"),
        "grad_clip": ({"grad_clip": -1}, "grad_clip must be > 0"),
        "gan.loss": ({"gan": SETTINGS["gan"] | {"loss": "wgan"}}, "gan.loss is 'wgan'; known: bce, ragan"),
        "pixel_loss": ({"pixel_loss": "huber"}, "pixel_loss is 'huber'"),
        "perceptual": ({"perceptual": SETTINGS["perceptual"] | {"weight": 1.0}}, "perceptual.weights_file is not set"),
        "perceptual key": (
            {"perceptual": SETTINGS["perceptual"] | {"weights": "x"}},
            "unknown key.*perceptual.weights",
        ),
        "unknown key": ({"emma": 0.9}, "unknown key.*emma"),
        "gpus": ({"gpus": 3}, "batch_size 4 is not divisible by gpus 3"),
    }
    for change, message in bad.values():
        with pytest.raises(ValueError, match=message):
            check_settings(SETTINGS | change)


def test_a_job_crosses_a_process_boundary_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fine_tune = {
        "init_generator": Path("init/generator.pt"),
        "init_card": Path("init/model.yaml"),
        "budgets": (5, 20),
        "budget_weights": (Path("out/budget/5.pt"), Path("out/budget/20.pt")),
    }
    original = job(Path("split"), Path("out"), Path("ckpt"), ESRGAN, **fine_tune)
    assert original.settings.total_iterations == 40 == ESRGAN["pixel"]["iterations"] + ESRGAN["gan"]["iterations"]
    handed = json.loads(json.dumps(original.to_dict()))  # as the launcher writes it and a worker reads it
    assert handed["settings"] == ESRGAN and handed["budget_weights"] == ["out/budget/5.pt", "out/budget/20.pt"]
    again = TrainJob.from_dict(handed)
    assert again.settings == original.settings and again.settings.to_dict() == ESRGAN
    assert (again.budgets, again.init_card, again.store) == ((5, 20), "init/model.yaml", None)
    absolute = original.absolute()  # for workers started elsewhere: every path absolute, settings untouched
    assert absolute.generator == str(tmp_path / "out" / "generator.pt") and absolute.store is None
    assert absolute.budget_weights[1] == str(tmp_path / "out" / "budget" / "20.pt") and absolute.budget_table == ""
    assert absolute.settings is original.settings and absolute.threads == original.threads
    with pytest.raises(TypeError, match=r"Settings.from_dict\(settings\)"):
        TrainJob(**{**handed, "settings": ESRGAN})  # a dict is not parsed settings


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_refused_without_gpu():
    with pytest.raises(RuntimeError, match="cuda"):
        resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"


def test_rrdbnet_trains_and_infers_through_the_same_code(split, tmp_path):
    from scisr.infer import infer_folder

    settings = copy.deepcopy(SETTINGS)
    settings["generator"] = {"arch": "rrdbnet", "channels": 8, "blocks": 1, "growth": 4, "global_skip": True}
    settings["pixel"]["iterations"] = 4
    settings["gan"]["iterations"] = 2
    fit(split, tmp_path / "out", tmp_path / "ckpt", settings, name="esrgan")
    card = ModelCard.read(tmp_path / "out" / "model.yaml")
    assert card.arch == "rrdbnet" and card.args["growth"] == 4
    infer_folder(
        split / "val" / "LR",
        tmp_path / "pred",
        generator=tmp_path / "out" / "generator.pt",
        card=tmp_path / "out" / "model.yaml",
        scale=4,
        tile=16,
        overlap=4,
        device="cpu",
        threads=1,
    )
    for hr in (split / "val" / "HR").glob("*.png"):
        assert read_png16(tmp_path / "pred" / hr.name).shape == read_png16(hr).shape


def test_training_does_not_depend_on_the_file_names(split, tmp_path):
    """Split files are named by keyed pseudonyms: the same pixels under other names must train the same weights."""
    renamed = tmp_path / "renamed"
    for part in ("train", "val"):
        paths = sorted((split / part / "HR").glob("*.png"))
        for k, path in enumerate(paths):  # reversed name order
            for side in ("HR", "LR"):
                target = renamed / part / side / f"x{len(paths) - k:02d}.png"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(split / part / side / path.name, target)
    settings = copy.deepcopy(SETTINGS)
    settings["pixel"] = settings["pixel"] | {"iterations": 8, "milestones": []}
    settings["gan"] = settings["gan"] | {"iterations": 0}
    torch.set_num_threads(1)
    fit(split, tmp_path / "a", tmp_path / "ca", settings)
    fit(renamed, tmp_path / "b", tmp_path / "cb", settings)
    first = torch.load(tmp_path / "a" / "generator.pt", weights_only=True)
    second = torch.load(tmp_path / "b" / "generator.pt", weights_only=True)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
