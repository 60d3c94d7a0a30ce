"""GAN losses (bce, ragan), the VGG19 perceptual loss with a user-named weights file, and the EMA."""

import copy
import hashlib

import pytest
import torch
import torch.nn.functional as F
from conftest import train_settings
from torch import nn

from scisr.models.vgg import LAYERS, VGG19Features, load_vgg19_features
from scisr.train import losses
from scisr.train.ema import EMA
from scisr.train.settings import check_settings

# torchvision's vgg19().features: the conv module indices (conv1_1 ... conv5_4)
TORCHVISION_CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


# --- pixel and adversarial losses -----------------------------------------------------------------
def test_pixel_losses_by_name():
    assert losses.pixel_loss("l1") is F.l1_loss
    assert losses.pixel_loss("mse") is F.mse_loss and losses.pixel_loss("l2") is F.mse_loss
    with pytest.raises(KeyError, match="pixel_loss 'l3'"):
        losses.pixel_loss("l3")


def test_adversarial_registry():
    assert set(losses.ADVERSARIAL_LOSSES) == {"bce", "ragan"}
    with pytest.raises(KeyError, match=r"gan.loss 'wgan'.*bce, ragan"):
        losses.adversarial_loss("wgan")


@pytest.mark.parametrize("name", ["bce", "ragan"])
def test_gan_losses_move_the_right_way(name):
    loss = losses.adversarial_loss(name)
    real, fake = torch.tensor([[0.3], [-0.2], [0.5]]), torch.tensor([[0.1], [0.4], [-0.6]])
    d, g = loss.discriminator(real, fake), loss.generator(fake, real)
    assert loss.discriminator(real + 1.0, fake) < d  # D is happier when reals look more real
    assert loss.discriminator(real, fake + 1.0) > d  # ... and unhappier when fakes do
    assert loss.generator(fake + 1.0, real) < g  # G gains when its fakes look more real
    assert torch.isfinite(d) and torch.isfinite(g) and d > 0 and g > 0


def test_bce_values():
    loss = losses.adversarial_loss("bce")
    zero = torch.zeros(4, 1)
    torch.testing.assert_close(loss.discriminator(zero, zero), 2 * torch.log(torch.tensor(2.0)))
    fake = torch.tensor([[1.5], [-0.5]])
    torch.testing.assert_close(loss.generator(fake, None), F.softplus(-fake).mean())


def test_ragan_is_relativistic_and_matches_the_formula():
    loss = losses.adversarial_loss("ragan")
    torch.manual_seed(0)
    real, fake = torch.randn(8, 1), torch.randn(8, 1)
    # D_Ra(a, b) = sigmoid(C(a) - mean C(b)); -log sigmoid(x) = softplus(-x), -log(1 - sigmoid(x)) = softplus(x)
    expected_d = 0.5 * (F.softplus(-(real - fake.mean())).mean() + F.softplus(fake - real.mean()).mean())
    expected_g = 0.5 * (F.softplus(real - fake.mean()).mean() + F.softplus(-(fake - real.mean())).mean())
    torch.testing.assert_close(loss.discriminator(real, fake), expected_d)
    torch.testing.assert_close(loss.generator(fake, real), expected_g)
    # only differences of logits matter
    torch.testing.assert_close(loss.discriminator(real + 3.0, fake + 3.0), expected_d)
    # the generator learns from the real logits too: reals looking more real hurt it
    assert loss.generator(fake, real + 1.0) > expected_g
    with pytest.raises(ValueError, match="real"):
        loss.generator(fake, None)


def test_ragan_bf16_logits_give_float32_loss():
    loss = losses.adversarial_loss("ragan")
    real, fake = torch.randn(4, 1, dtype=torch.bfloat16), torch.randn(4, 1, dtype=torch.bfloat16)
    assert loss.discriminator(real, fake).dtype == torch.float32


# --- VGG19 ------------------------------------------------------------------------------------
def test_vgg19_names_follow_torchvision():
    assert {k: LAYERS[k] for k in ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4")} == {
        "conv1_2": 2,
        "conv2_2": 7,
        "conv3_4": 16,
        "conv4_4": 25,
        "conv5_4": 34,
    }
    model = VGG19Features("conv5_4")
    keys = list(model.state_dict())
    assert keys == [f"features.{i}.{p}" for i in TORCHVISION_CONV_INDICES for p in ("weight", "bias")]
    assert model.state_dict()["features.34.weight"].shape == (512, 512, 3, 3)
    assert model.state_dict()["features.0.weight"].shape == (64, 3, 3, 3)
    assert isinstance(model.features[34], nn.Conv2d) and len(model.features) == 35  # before the ReLU
    short = VGG19Features("conv2_2")
    assert list(short.state_dict())[-1] == "features.7.bias" and isinstance(short.features[-1], nn.Conv2d)
    with pytest.raises(ValueError, match="conv6_1"):
        VGG19Features("conv6_1")


def test_vgg19_is_frozen_and_stays_in_eval_mode():
    model = VGG19Features("conv2_2")
    assert not any(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.training and not any(m.training for m in model.modules())


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A torchvision-style vgg19 state dict file with random features and dummy classifier keys."""
    torch.manual_seed(0)
    state = dict(VGG19Features("conv5_4").state_dict())
    for i, (rows, cols) in {0: (8, 5), 3: (8, 8), 6: (3, 8)}.items():  # torchvision: 4096x25088, ... 1000x4096
        state[f"classifier.{i}.weight"] = torch.randn(rows, cols)
        state[f"classifier.{i}.bias"] = torch.randn(rows)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(state, path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest(), state


def test_vgg19_loads_a_torchvision_file_and_checks_its_sha256(vgg_file):
    path, sha, state = vgg_file
    model, digest = load_vgg19_features(path, "conv5_4", sha256=sha.upper())
    assert digest == sha
    assert torch.equal(model.state_dict()["features.34.weight"], state["features.34.weight"])
    wrong = "0" * 64
    with pytest.raises(ValueError, match=f"expected {wrong}.*got {sha}"):
        load_vgg19_features(path, "conv5_4", sha256=wrong)
    shallow, _ = load_vgg19_features(path, "conv3_4")  # deeper keys ignored
    assert list(shallow.state_dict())[-1] == "features.16.bias"
    with pytest.raises(FileNotFoundError, match="weights_file"):
        load_vgg19_features(path.with_name("absent.pth"))


def test_vgg19_rejects_a_foreign_state_dict(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=r"not a torchvision vgg19 state dict.*features.0.weight"):
        load_vgg19_features(path)


def test_perceptual_loss(vgg_file):
    path, sha, _ = vgg_file
    loss = losses.PerceptualLoss(path, layer="conv5_4", sha256=sha)
    assert loss.sha256 == sha
    torch.manual_seed(1)
    target = torch.rand(2, 1, 32, 32)
    prediction = (target + 0.1 * torch.randn_like(target)).requires_grad_(True)
    assert loss(target, target.clone()).item() == 0.0
    value = loss(prediction, target)
    assert value.item() > 0
    value.backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())  # the VGG is frozen
    # features before activation: negative values survive at conv5_4
    assert (loss.vgg(target) < 0).any()
    # a 1-channel image is the same as its 3-channel grey version
    torch.testing.assert_close(loss.vgg(target), loss.vgg(target.repeat(1, 3, 1, 1)))
    torch.testing.assert_close(
        loss(prediction.detach(), target), loss(prediction.detach().repeat(1, 3, 1, 1), target.repeat(1, 3, 1, 1))
    )
    with pytest.raises(ValueError, match="1- or 3-channel"):
        loss.vgg(torch.rand(1, 2, 16, 16))


def test_perceptual_weight_without_weights_file_is_refused():
    settings = train_settings({"batch_size": 2, "patch_size": 32})
    check_settings(settings)  # the schema's default perceptual weight is 0: fine
    settings["perceptual"]["weight"] = 0.01
    with pytest.raises(
        ValueError, match=r"perceptual.weight is 0.01 but perceptual.weights_file is not set.*perceptual.weight: 0"
    ):
        check_settings(settings)
    settings["perceptual"] |= {"weights_file": "/nowhere/vgg19.pth", "layer": "conv5_5"}
    with pytest.raises(ValueError, match=r"perceptual.layer"):
        check_settings(settings)
    settings["perceptual"]["layer"] = "conv4_4"
    check_settings(settings)  # reads no file


# --- EMA --------------------------------------------------------------------------------------
def test_ema_update_is_the_weighted_average():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.arange(p.numel(), dtype=torch.float32).view_as(p))  # integers: exact arithmetic
    ema = EMA(model, decay=0.75)
    old = copy.deepcopy(ema.state_dict())
    assert not any(p.requires_grad for p in ema.model.parameters())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(4.0)
        model[1].running_mean.fill_(7.0)
    ema.update(model)
    new = model.state_dict()
    for name, _p in model.named_parameters():
        assert torch.equal(ema.state_dict()[name], 0.75 * old[name] + 0.25 * new[name]), name
    assert torch.equal(ema.state_dict()["1.running_mean"], new["1.running_mean"])  # buffers are copied
    # the same for arbitrary floats, to float32 rounding
    torch.manual_seed(0)
    model2 = nn.Linear(5, 5)
    ema2 = EMA(model2, decay=0.999)
    before = {k: v.clone() for k, v in ema2.state_dict().items()}
    with torch.no_grad():
        model2.weight.add_(torch.randn_like(model2.weight))
    ema2.update(model2)
    torch.testing.assert_close(ema2.model.weight, 0.999 * before["weight"] + 0.001 * model2.weight, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, 1.0)
