"""Two-stage training on a tiny generated split: outputs, determinism, resume after a kill, NaN guard."""

import copy
import logging
import math
import os
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
from scipy.ndimage import gaussian_filter

from scisr.io.files import write_png16
from scisr.models import build_generator
from scisr.prepare.resize import imresize
from scisr.train import losses, train_model
from scisr.train.checkpoint import load_checkpoint
from scisr.models.device import resolve_device
from scisr.train.loop import Settings

SETTINGS = {
    "seed": 0,
    "scale": 4,
    "generator": {"arch": "srresnet", "channels": 8, "blocks": 1, "batch_norm": False},
    "discriminator": {"arch": "vgg", "base_channels": 8, "pool": 1, "dense_features": 16},
    "batch_size": 4,
    "patch_size": 32,
    "pixel_loss": "l1",
    "pixel": {"iterations": 30, "lr": 5e-4, "milestones": [20], "gamma": 0.5},
    "gan": {"iterations": 10, "lr": 1e-4, "adv_weight": 5e-3, "pixel_weight": 1.0, "milestones": [],
            "gamma": 0.5},
    "val_every": 10,
    "checkpoint_every": 10,
}
TOTAL = 40


def make_split(root: Path, size: int = 64, scale: int = 4, n_train: int = 6, n_val: int = 2) -> Path:
    """A split folder of smooth random HR images and their bicubic LR partners."""
    rng = np.random.default_rng(1)
    for split, count in [("train", n_train), ("val", n_val)]:
        for i in range(count):
            hr = gaussian_filter(rng.random((size, size)), 2.0)
            hr = (hr - hr.min()) / (hr.max() - hr.min())
            write_png16(root / split / "HR" / f"im{i:02d}.png", hr)
            write_png16(root / split / "LR" / f"im{i:02d}.png", np.clip(imresize(hr, 1 / scale), 0, 1))
    return root


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("split"))


@pytest.fixture(scope="module")
def reference(split, tmp_path_factory) -> Path:
    """One uninterrupted training run; returns its work folder (out/, ckpt/)."""
    work = tmp_path_factory.mktemp("reference")
    train_model(split, work / "out", work / "ckpt", SETTINGS, name="tiny")
    return work


def weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / "generator.pt", weights_only=True)


def test_outputs(reference):
    out = reference / "out"
    card = yaml.safe_load((out / "model.yaml").read_text())
    model = build_generator(card["arch"], **card["args"])
    model.load_state_dict(weights(out), strict=True)
    assert card["parameters"] == sum(p.numel() for p in model.parameters())
    assert card["scale"] == 4 and card["in_channels"] == 1 and card["name"] == "tiny"
    assert card["iterations"] == {"pixel": 30, "gan": 10}
    assert len(card["training_data"]["train_hr_sha256"]) == 64
    history = pd.read_csv(out / "history.tsv", sep="\t")
    assert history["iteration"].tolist() == [0, 10, 20, 30, 40]
    assert history["stage"].tolist() == ["init", "pixel", "pixel", "pixel", "gan"]
    assert np.isfinite(history["val_rmse"]).all() and np.isfinite(history["val_psnr"]).all()
    assert history.loc[history.stage != "gan", "loss_adv"].isna().all()
    assert history.loc[0, ["loss_pixel", "lr"]].isna().all()  # the untrained network, before any step
    assert np.isfinite(history.loc[history.stage == "gan", ["loss_adv", "loss_d"]]).all().all()
    assert history["lr"].tolist()[1:] == [5e-4, 5e-4, 2.5e-4, 1e-4]  # decay after 20 iterations
    assert load_checkpoint(reference / "ckpt" / "last.pt")["progress"]["iteration"] == TOTAL


def test_same_seed_same_weights_and_changed_settings_start_fresh(split, reference, tmp_path, caplog):
    train_model(split, tmp_path / "a", tmp_path / "ckpt_a", SETTINGS, name="tiny")
    for key, value in weights(reference / "out").items():
        assert torch.equal(value, weights(tmp_path / "a")[key]), key
    # a checkpoint written for other settings is not resumed
    other = copy.deepcopy(SETTINGS)
    other["seed"] = 1
    with caplog.at_level(logging.INFO, logger="scisr.train.loop"):
        train_model(split, tmp_path / "b", tmp_path / "ckpt_a", other, name="tiny")
    assert "starting fresh" in caplog.text
    assert not all(torch.equal(v, weights(tmp_path / "b")[k]) for k, v in weights(reference / "out").items())


KILLED_RUN = """
import json, sys, time
from scisr.train import loop
save = loop._Trainer.save
def slow_save(self):
    save(self)
    time.sleep(120)  # stand-in for slow progress: the test kills us here
loop._Trainer.save = slow_save
loop.train_model(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), name="tiny")
"""


def test_resume_after_kill_matches_uninterrupted_run(split, reference, tmp_path, caplog):
    import json

    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_RUN), str(split), str(tmp_path / "out"), str(ckpt),
         json.dumps(SETTINGS)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (ckpt / "last.pt").exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert load_checkpoint(ckpt / "last.pt")["progress"]["iteration"] == 10
    assert not (tmp_path / "out").exists()

    with caplog.at_level(logging.INFO, logger="scisr.train.loop"):
        train_model(split, tmp_path / "out", ckpt, SETTINGS, name="tiny")
    assert "resuming from iteration 10" in caplog.text
    history = pd.read_csv(tmp_path / "out" / "history.tsv", sep="\t")
    expected = pd.read_csv(reference / "out" / "history.tsv", sep="\t")
    assert history["iteration"].tolist() == expected["iteration"].tolist()
    np.testing.assert_allclose(history["val_rmse"], expected["val_rmse"], rtol=1e-6)
    for key, value in weights(reference / "out").items():
        torch.testing.assert_close(weights(tmp_path / "out")[key], value, rtol=1e-6, atol=1e-7)


def test_nan_guard_keeps_last_good_checkpoint(split, tmp_path, monkeypatch):
    calls = {"n": 0}

    def poisoned(prediction, target):
        calls["n"] += 1
        loss = torch.nn.functional.l1_loss(prediction, target)
        return loss * math.nan if calls["n"] > 15 else loss

    monkeypatch.setitem(losses.PIXEL_LOSSES, "l1", poisoned)
    with pytest.raises(RuntimeError, match="iteration 16.*last good checkpoint"):
        train_model(split, tmp_path / "out", tmp_path / "ckpt", SETTINGS, name="tiny")
    assert load_checkpoint(tmp_path / "ckpt" / "last.pt")["progress"]["iteration"] == 10
    assert not (tmp_path / "out").exists()


def test_pixel_only_and_patch_clamped(split, tmp_path, caplog):
    settings = copy.deepcopy(SETTINGS)
    settings["pixel"]["iterations"] = 5
    settings["gan"]["iterations"] = 0
    settings["patch_size"] = 128
    with caplog.at_level(logging.WARNING):
        train_model(split, tmp_path / "out", tmp_path / "ckpt", settings, name="tiny")
    assert "patch_size 128" in caplog.text
    history = pd.read_csv(tmp_path / "out" / "history.tsv", sep="\t")
    assert history["iteration"].tolist() == [0, 5] and history["stage"].tolist() == ["init", "pixel"]


def test_settings_errors_name_the_key(split, tmp_path):
    settings = copy.deepcopy(SETTINGS)
    del settings["pixel"]["lr"]
    with pytest.raises(KeyError, match="pixel.lr"):
        Settings.from_dict(settings)
    settings = copy.deepcopy(SETTINGS)
    settings["patch_size"] = 30
    with pytest.raises(ValueError, match="multiple of the scale"):
        train_model(split, tmp_path / "out", tmp_path / "ckpt", settings, name="tiny")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_refused_without_gpu():
    with pytest.raises(RuntimeError, match="cuda"):
        resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"
