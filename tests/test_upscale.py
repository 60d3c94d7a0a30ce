"""`scisr upscale`: physical units round trip, raster formats, tiling through the command, exit codes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image
from upscale_helpers import NORMALIZATION, bicubic, model_folder, physical

from scisr.cli import main
from scisr.upscale import EXIT_INPUT, EXIT_MODEL, EXIT_OK, EXIT_USAGE
from scisr.upscale.units import upscale_physical


@pytest.fixture(scope="module")
def identity(tmp_path_factory):
    return model_folder(tmp_path_factory.mktemp("models") / "identity")


def run(*args) -> int:
    return main(["upscale", "--quiet", *map(str, args)])


def test_identity_model_returns_bicubic_in_physical_units(identity):
    from scisr.infer import load_model

    net, image = (
        load_model(identity / "generator.pt", identity / "model.yaml", "cpu"),
        physical((40, 36)).astype(np.float32),
    )
    out = np.zeros((160, 144), np.float32)
    upscale_physical(net, image, 4, NORMALIZATION, out, tile=16)
    np.testing.assert_allclose(out, bicubic(image), atol=1e-3 * 4000)  # float32 over a 4000-unit range
    assert out.min() < -1000 - 300  # values beyond the percentiles came back, not clipped
    clipped = np.zeros_like(out)
    upscale_physical(net, image, 4, NORMALIZATION, clipped, tile=16, range_mode="clip")
    low, high = np.percentile(image, [1, 99])
    assert clipped.min() >= low - 1e-2 and clipped.max() <= high + 1e-2


def test_nan_pixels_stay_nan_over_their_block(identity):
    from scisr.infer import load_model

    image = physical((20, 20)).astype(np.float32)
    image[5, 7] = np.nan
    out = np.zeros((80, 80), np.float32)
    net = load_model(identity / "generator.pt", identity / "model.yaml", "cpu")
    upscale_physical(net, image, 4, NORMALIZATION, out, tile=16)
    assert np.isnan(out[20:24, 28:32]).all() and np.isfinite(out).sum() == 80 * 80 - 16


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip_keeps_bit_depth(identity, tmp_path, dtype):
    top = np.iinfo(dtype).max
    image = np.round(physical((24, 20), 0.1 * top, 0.9 * top)).clip(0, top).astype(dtype)
    Image.fromarray(image).save(tmp_path / "a.png")
    assert run("--model", identity, "--out", tmp_path / "out", tmp_path / "a.png") == EXIT_OK
    with Image.open(tmp_path / "out" / "a.png") as im:
        out = np.asarray(im)
    assert out.dtype == dtype and out.shape == (96, 80)
    expected = np.clip(np.round(bicubic(image)), 0, top)
    assert np.abs(out.astype(float) - expected).max() <= 1 + 1e-3 * top


def test_float_tiff_round_trip_and_folder(identity, tmp_path):
    image = physical((30, 26)).astype(np.float32)
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "b.tif", image)
    tifffile.imwrite(tmp_path / "in" / "c.tif", image[::-1].copy())
    assert run("--model", identity, "--out", tmp_path / "out", tmp_path / "in", "--tile", "12") == EXIT_OK
    out = tifffile.imread(tmp_path / "out" / "in" / "b.tif")
    assert out.dtype == np.float32 and out.shape == (120, 104)
    np.testing.assert_allclose(out, bicubic(image), atol=0.5)  # tiles of 12 px: still bicubic everywhere
    assert (tmp_path / "out" / "in" / "c.tif").is_file()


def test_tiled_command_equals_whole_image(tmp_path):
    model = model_folder(tmp_path / "random", identity=False)
    image = physical((48, 40)).astype(np.float32)
    tifffile.imwrite(tmp_path / "x.tif", image)
    assert run("--model", model, "--out", tmp_path / "whole", tmp_path / "x.tif", "--tile", "512") == EXIT_OK
    assert (
        run(
            "--model",
            model,
            "--out",
            tmp_path / "tiled",
            tmp_path / "x.tif",
            "--tile",
            "32",
            "--overlap",
            "30",
            "--batch",
            "3",
        )
        == EXIT_OK
    )
    whole, tiled = (tifffile.imread(tmp_path / d / "x.tif") for d in ("whole", "tiled"))
    np.testing.assert_allclose(tiled, whole, atol=1e-4 * 4000)  # 1e-4 of the normalized range


def test_scale_and_channel_mismatch_are_model_errors(identity, tmp_path, capsys):
    tifffile.imwrite(tmp_path / "x.tif", physical((16, 16)).astype(np.float32))
    assert run("--model", identity, "--out", tmp_path / "o", "--scale", "2", tmp_path / "x.tif") == EXIT_MODEL
    err = capsys.readouterr().err
    assert "x4" in err and "--scale 2" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    rgb = model_folder(tmp_path / "rgb", channels=3)
    assert run("--model", rgb, "--out", tmp_path / "o", tmp_path / "x.tif") == EXIT_MODEL
    assert "3-channel" in capsys.readouterr().err
    assert run("--model", tmp_path / "nothing", "--out", tmp_path / "o", tmp_path / "x.tif") == EXIT_MODEL
    assert "no model card" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.yaml").write_text((identity / "model.yaml").read_text())
    (tmp_path / "bad" / "generator.pt").write_bytes(b"not a state dict")
    assert run("--model", tmp_path / "bad", "--out", tmp_path / "o", tmp_path / "x.tif") == EXIT_MODEL
    assert "cannot load the generator" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_unreadable_input_is_reported_and_the_rest_written(identity, tmp_path, capsys):
    (tmp_path / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    tifffile.imwrite(tmp_path / "good.tif", physical((16, 16)).astype(np.float32))
    code = run(
        "--model",
        identity,
        "--out",
        tmp_path / "o",
        tmp_path / "broken.dcm",
        tmp_path / "junk.png",
        tmp_path / "good.tif",
        tmp_path / "missing.fits",
    )
    err = capsys.readouterr().err
    assert code == EXIT_INPUT and "Traceback" not in err
    assert "broken.dcm" in err and "junk.png" in err and "missing.fits: no such file" in err
    assert (tmp_path / "o" / "good.tif").is_file() and not (tmp_path / "o" / "junk.png").exists()


def test_colliding_outputs_are_a_usage_error(identity, tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        tifffile.imwrite(tmp_path / sub / "x.tif", physical((8, 8)).astype(np.float32))
    assert (
        run("--model", identity, "--out", tmp_path / "o", tmp_path / "a" / "x.tif", tmp_path / "b" / "x.tif")
        == EXIT_USAGE
    )


def test_bf16_preview_is_close_labelled_and_never_the_default(tmp_path, capsys):
    """--precision bf16 runs the network in bfloat16: close to fp32 (a preview) but not equal, and the FITS
    HISTORY and the command's own message say it is lossy; without the flag the output is fp32's."""
    from astropy.io import fits

    model = model_folder(tmp_path / "random", identity=False)
    image = physical((48, 40)).astype(np.float32)
    fits.PrimaryHDU(image).writeto(tmp_path / "x.fits")
    assert run("--model", model, "--out", tmp_path / "fp32", tmp_path / "x.fits") == EXIT_OK
    assert run("--model", model, "--out", tmp_path / "bf16", tmp_path / "x.fits", "--precision", "bf16") == EXIT_OK
    assert "bf16 preview" in capsys.readouterr().err
    with fits.open(tmp_path / "fp32" / "x.fits") as a, fits.open(tmp_path / "bf16" / "x.fits") as b:
        exact, preview = a[0].data.astype(np.float64), b[0].data.astype(np.float64)
        assert "bf16 preview" in str(b[0].header.get("HISTORY")) and "bf16" not in str(a[0].header.get("HISTORY"))
    difference = np.abs(exact - preview).max() / 4000  # of the normalized range
    assert 0 < difference < 2e-2
