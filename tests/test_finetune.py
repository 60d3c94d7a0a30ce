"""Fine-tuning (`models.<name>.init`): training starts from the init model's weights, strictly; the card says so.

The init models are made by the real writers: a short training run (scisr.train) and an import
(scisr.models.import_weights) of a small 3-channel RRDBNet, which a 1-channel model fine-tunes through the
channel adapter.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_NORMALIZATION, tiny_settings
from train_helpers import make_split

from scisr import checks
from scisr.card import ModelCard
from scisr.infer import infer_folder, load_model
from scisr.io.files import read_png16
from scisr.metrics import psnr, rmse
from scisr.models import import_weights
from scisr.models.rrdbnet import RRDBNet
from scisr.train import Settings, TrainJob, train

NORMALIZATION = TINY_NORMALIZATION
SRRESNET = {"arch": "srresnet", "channels": 4, "blocks": 1}
RRDB = {"channels": 8, "blocks": 1, "growth": 4}


def settings(generator: dict, pixel: int = 4, gan: int = 2, lr: float = 5e-4) -> dict:
    return tiny_settings(
        {
            "generator": generator,
            "discriminator": {"base_channels": 4},
            "batch_size": 2,
            "pixel": {"iterations": pixel, "lr": lr},
            "gan": {"iterations": gan},
            "ema": 0.9,
            "val_every": 2,
            "checkpoint_every": 100,
        }
    )


def run(tmp, split, name: str, cfg: dict, init: str | None = None) -> ModelCard:
    """Train model `name` into tmp/models/<name>, starting from model `init`'s folder when given."""
    out = tmp / "models" / name
    where = {}
    if init is not None:
        where = {
            "init_generator": tmp / "models" / init / "generator.pt",
            "init_card": tmp / "models" / init / "model.yaml",
        }
    train(
        TrainJob(
            train_dir=split / "train",
            val_dir=split / "val",
            generator=out / "generator.pt",
            history=out / "history.tsv",
            card=out / "model.yaml",
            checkpoint_dir=tmp / "ckpt" / name,
            settings=Settings.from_dict(cfg),
            name=name,
            dataset="mri",
            normalization=NORMALIZATION,
            device="cpu",
            threads=1,
            **where,
        )
    )
    return ModelCard.read(out / "model.yaml")


def val_scores(model_dir, split) -> tuple[float, float]:
    """Mean RMSE and PSNR of a model folder on the val split, through infer's loader (1-channel data)."""
    net = load_model(model_dir / "generator.pt", model_dir / "model.yaml", "cpu", data_channels=1)
    scores = []
    with torch.no_grad():
        for lr_path in sorted((split / "val" / "LR").glob("*.png")):
            lr = torch.from_numpy(read_png16(lr_path))[None, None]
            sr = net(lr).clamp(0, 1)[0, 0].numpy()
            hr = read_png16(split / "val" / "HR" / lr_path.name)
            scores.append((rmse(sr, hr, crop_border=4), psnr(sr, hr, crop_border=4)))
    return tuple(np.mean(scores, axis=0))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("finetune")
    split = make_split(tmp / "split", n_train=3, n_val=2)
    # the init model must differ from a fresh network: train it a little on other data
    other = make_split(tmp / "other", n_train=3, n_val=1)
    run(tmp, other, "generic", settings(SRRESNET, pixel=6, gan=0, lr=2e-3))
    return tmp, split


def test_fine_tuning_starts_from_the_init_weights_and_the_card_says_so(study) -> None:
    tmp, split = study
    card = run(tmp, split, "mri_ft", settings(SRRESNET), init="generic")
    history = pd.read_csv(tmp / "models" / "mri_ft" / "history.tsv", sep="\t")
    first = history.iloc[0]
    assert first["stage"] == "init" and first["iteration"] == 0
    # iteration 0 validates the init model itself on this model's val split
    init_rmse, init_psnr = val_scores(tmp / "models" / "generic", split)
    assert first["val_rmse"] == pytest.approx(init_rmse, rel=1e-5)
    assert first["val_psnr"] == pytest.approx(init_psnr, abs=1e-4)
    # ... which a fresh network does not reproduce (the untrained SRResNet is exactly bicubic)
    fresh = run(tmp, split, "scratch", settings(SRRESNET))
    fresh_first = pd.read_csv(tmp / "models" / "scratch" / "history.tsv", sep="\t").iloc[0]
    assert abs(fresh_first["val_rmse"] - init_rmse) > 1e-5
    assert fresh.init_from is None and fresh.training["init"] is None
    assert card.init_from == "generic" and card.source == "trained"
    assert card.training["init"]["model"] == "generic" and len(card.training["init"]["generator_sha256"]) == 64
    assert card.iterations == {"pixel": 4, "gan": 2}


def test_a_generator_that_differs_from_the_init_model_is_refused_naming_the_difference(study) -> None:
    tmp, split = study
    wider = {**SRRESNET, "channels": 8}
    with pytest.raises(
        ValueError,
        match=r"training wide: its generator settings \(srresnet\) differ from init model "
        r"'generic'.*channels: 8 vs 4.*models\.wide\.train\.generator",
    ):
        run(tmp, split, "wide", settings(wider), init="generic")
    with pytest.raises(ValueError, match=r"differ from init model 'generic'.*\(srresnet\): .*growth"):
        run(tmp, split, "rrdb", settings({"arch": "rrdbnet", **RRDB}), init="generic")
    assert not (tmp / "models" / "wide").exists() and not (tmp / "models" / "rrdb").exists()


def test_an_imported_rgb_model_fine_tunes_on_grey_data_through_the_adapter(study, tmp_path) -> None:
    tmp, split = study
    torch.manual_seed(0)
    source = RRDBNet(3, 3, scale=4, **RRDB)
    torch.save(source.state_dict(), tmp_path / "rgb.pth")
    imported = tmp / "models" / "pretrained"
    import_weights(
        tmp_path / "rgb.pth",
        imported / "generator.pt",
        imported / "model.yaml",
        name="pretrained",
        licence="test weights",
    )
    card = run(tmp, split, "mri_ftp", settings({"arch": "rrdbnet", **RRDB, "global_skip": False}), init="pretrained")
    # the network keeps the imported one's 3 channels and parameter names; the card says it takes 1-channel data
    assert card.args["in_channels"] == card.args["out_channels"] == 3 and card.channels == 1
    assert card.init_from == "pretrained" and card.training["init"]["source"] == "imported"
    weights = torch.load(tmp / "models" / "mri_ftp" / "generator.pt", weights_only=True)
    assert set(weights) == set(source.state_dict()) and card.parameters == sum(w.numel() for w in weights.values())
    first = pd.read_csv(tmp / "models" / "mri_ftp" / "history.tsv", sep="\t").iloc[0]
    assert first["val_rmse"] == pytest.approx(val_scores(imported, split)[0], rel=1e-5)
    # inference runs it on the 1-channel test images through the same adapter
    infer_folder(
        split / "val" / "LR",
        tmp_path / "pred",
        generator=tmp / "models" / "mri_ftp" / "generator.pt",
        card=tmp / "models" / "mri_ftp" / "model.yaml",
        scale=4,
        tile=64,
        overlap=8,
        device="cpu",
        threads=1,
    )
    assert read_png16(tmp_path / "pred" / "im00.png").shape == (64, 64)


def test_config_checks_of_init_and_import() -> None:
    datasets = {"mri": {}, "generic": {}}
    models = {
        "generic": {"data": "generic", "train": {}},
        "mri_ft": {"data": "mri", "init": "generic", "train": {}},
        "pretrained": {"import": "realesrgan-x4plus", "train": {}, "licence": None},
    }
    assert checks.model_problems(models, datasets) == []
    bad = {
        **models,
        "astro_ft": {"data": "mri", "init": "nope", "train": {}},
        "loop": {"data": "mri", "init": "loop2", "train": {}},
        "loop2": {"data": "mri", "init": "loop", "train": {}},
        "pretrained": {"data": "mri", "train": {}},
        "imp": {"import": "realesrgan-x4", "init": "generic", "train": {"pixel": {}}},
    }
    text = "\n".join(checks.model_problems(bad, datasets))
    assert "models.astro_ft: a name <dataset>_<suffix> marks a model of that dataset" in text
    assert "models.astro_ft.init: unknown model 'nope'" in text
    assert "models.loop.init: the models start from each other in a loop (loop -> loop2 -> loop)" in text
    assert "models.pretrained: the name 'pretrained' is kept for imported weights" in text
    assert "models.imp.import: 'realesrgan-x4' is not a packaged model (known: realesrgan-x4plus" in text
    assert "models.imp: an imported model (import: ...) is not trained, so it takes no init, train" in text
    generator = {"arch": "srresnet", "channels": 32, "blocks": 4}
    assert checks.init_problems("mri_ft", generator, "generic", dict(generator)) == []
    (problem,) = checks.init_problems("mri_ft", {**generator, "blocks": 8}, "generic", generator)
    assert "models.mri_ft.train.generator differs from that of its init model 'generic' (blocks: 8 vs 4)" in problem
    (problem,) = checks.init_problems("mri_ftp", generator, "pretrained", None)
    assert "arch is 'srresnet' but init model 'pretrained' is imported (an RRDBNet)" in problem
    assert checks.init_problems("mri_ftp", {"arch": "rrdbnet"}, "pretrained", None) == []
