"""Generator and discriminator shapes, the bicubic start of SRResNet, and the registry."""

import pytest
import torch
import torch.nn.functional as F

from scisr.models import (
    DISCRIMINATORS,
    GENERATORS,
    build_discriminator,
    build_generator,
    count_parameters,
    generator_arguments,
)


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("channels", [1, 3])
def test_srresnet_output_shape(scale, channels):
    model = build_generator("srresnet", in_channels=channels, channels=8, blocks=2, scale=scale)
    out = model(torch.rand(2, channels, 12, 10))
    assert out.shape == (2, channels, 12 * scale, 10 * scale)


def test_srresnet_without_global_skip_and_with_batch_norm():
    model = build_generator(
        "srresnet", channels=8, blocks=2, scale=4, batch_norm=True, global_skip=False, out_channels=3
    )
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 3, 32, 32)


def test_untrained_srresnet_is_bicubic():
    torch.manual_seed(0)
    model = build_generator("srresnet", channels=8, blocks=2, scale=4).eval()
    x = torch.rand(1, 1, 16, 20)
    expected = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_srresnet_rejects_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        build_generator("srresnet", scale=3)


@pytest.mark.parametrize("size", [48, 64, 96])
@pytest.mark.parametrize("pool", [1, 6])
def test_discriminator_accepts_any_patch_size(size, pool):
    model = build_discriminator("vgg", in_channels=1, base_channels=8, pool=pool, dense_features=16)
    assert model(torch.rand(3, 1, size, size)).shape == (3, 1)


def test_registry_unknown_name_lists_known():
    with pytest.raises(KeyError, match="srresnet"):
        build_generator("esrgan-xl")
    with pytest.raises(KeyError, match="vgg"):
        build_discriminator("unet")
    assert "srresnet" in GENERATORS and "vgg" in DISCRIMINATORS


def test_generator_arguments_fill_defaults_and_name_bad_keys():
    args = generator_arguments("srresnet", channels=32, scale=4)
    assert args["channels"] == 32 and args["global_skip"] is True and args["batch_norm"] is False
    assert count_parameters(build_generator("srresnet", **args)) == count_parameters(
        build_generator("srresnet", channels=32, scale=4)
    )
    with pytest.raises(TypeError, match="srresnet"):
        generator_arguments("srresnet", widht=3)


def test_count_parameters():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    assert count_parameters(model) == 3 * 4 + 4 + 4 + 1
    model[0].requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 5
