"""RRDBNet as ESRGAN defines it: parameter count, BasicSR names, shapes at every scale, the bicubic start."""

import pytest
import torch
import torch.nn.functional as F

from scisr.models import GENERATORS, build_generator, count_parameters, generator_arguments
from scisr.models.rrdbnet import RRDBNet

SMALL = {"channels": 8, "blocks": 2, "growth": 4}


@pytest.fixture(scope="module")
def paper_rrdbnet() -> RRDBNet:
    """ESRGAN's x4 RGB generator: 23 RRDBs, 64 features, growth 32 (built once: 16.7M parameters)."""
    return RRDBNet(3, 3, scale=4).eval()


def test_paper_rrdbnet_has_the_published_parameter_count(paper_rrdbnet):
    assert count_parameters(paper_rrdbnet) == 16_697_987


def test_parameter_names_are_basicsr_names():
    names = set(RRDBNet(3, 3, channels=8, blocks=3, growth=4, scale=4).state_dict())
    for name in [
        "conv_first.weight",
        "body.0.rdb1.conv1.weight",
        "body.2.rdb3.conv5.bias",
        "conv_body.weight",
        "conv_up1.weight",
        "conv_up2.bias",
        "conv_hr.weight",
        "conv_last.bias",
    ]:
        assert name in names
    assert not any(n.startswith("conv_up3") for n in names)
    assert len([n for n in names if n.startswith("body.")]) == 3 * 3 * 5 * 2  # blocks x rdb x conv x (w, b)


def test_scale_8_adds_conv_up3_and_scale_2_unshuffles_the_input():
    assert "conv_up3.weight" in RRDBNet(1, scale=8, **SMALL).state_dict()
    x2 = RRDBNet(3, scale=2, **SMALL)
    assert x2.conv_first.in_channels == 12 and "conv_up3.weight" not in x2.state_dict()


@pytest.mark.parametrize("arch", ["srresnet", "rrdbnet"])
@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("channels", [1, 3])
def test_generator_output_shape(arch, scale, channels):
    size = {"channels": 8, "blocks": 2} | ({"growth": 4} if arch == "rrdbnet" else {})
    model = build_generator(arch, in_channels=channels, scale=scale, **size)
    out = model(torch.rand(2, channels, 12, 10))
    assert out.shape == (2, channels, 12 * scale, 10 * scale)


def test_scale_2_accepts_odd_sizes():
    model = RRDBNet(1, scale=2, **SMALL)
    assert model(torch.rand(1, 1, 7, 9)).shape == (1, 1, 14, 18)


def test_paper_defaults_and_other_output_channels():
    args = generator_arguments("rrdbnet", in_channels=1)
    assert args == {
        "in_channels": 1,
        "out_channels": None,
        "channels": 64,
        "blocks": 23,
        "growth": 32,
        "scale": 4,
        "global_skip": False,
    }
    model = RRDBNet(1, 3, **SMALL)
    assert model(torch.rand(1, 1, 6, 6)).shape == (1, 3, 24, 24)


def test_full_rrdbnet_runs_on_a_tiny_input(paper_rrdbnet):
    with torch.no_grad():
        assert paper_rrdbnet(torch.rand(1, 3, 16, 16)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_untrained_rrdbnet_with_global_skip_is_bicubic(scale):
    torch.manual_seed(0)
    model = RRDBNet(1, scale=scale, global_skip=True, **SMALL).eval()
    x = torch.rand(1, 1, 8, 10)
    expected = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_rejects_bad_scale_and_skip_with_other_channels():
    with pytest.raises(ValueError, match="scale"):
        RRDBNet(1, scale=3)
    with pytest.raises(ValueError, match="global_skip"):
        RRDBNet(1, 3, global_skip=True)


def test_builds_and_trains_the_way_the_training_loop_does():
    """loop.py: generator_arguments(arch, in_channels=, out_channels=, scale=, **config keys), channels_last."""
    assert "rrdbnet" in GENERATORS
    settings = {"channels": 8, "blocks": 1, "growth": 4, "global_skip": True}
    args = generator_arguments("rrdbnet", **{"in_channels": 1, "out_channels": 1, "scale": 4, **settings})
    model = build_generator("rrdbnet", **args).to(memory_format=torch.channels_last)
    lr = torch.rand(2, 1, 8, 8).contiguous(memory_format=torch.channels_last)
    loss = F.l1_loss(model(lr), torch.rand(2, 1, 32, 32))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.conv_last.weight.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="rrdbnet"):
        generator_arguments("rrdbnet", num_feat=64)
