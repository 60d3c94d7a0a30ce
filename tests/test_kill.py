"""Outside the workflow, too, a kill or a full disk loses nothing: `scisr upscale` killed mid-write reruns to the
same files, and a write into a full disk (a file-size limit) fails with a clear message and no truncated output.
(The workflow's phases are killed and resumed in tests/test_rerun.py.)"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile
from astropy.io import fits
from conftest import ROOT
from upscale_helpers import model_folder, physical

pytestmark = pytest.mark.slow  # each case runs `scisr upscale` in subprocesses, killed and run again
KILL_HOOK = ROOT / "tests" / "killhook"


def _env(**extra: str) -> dict:
    paths = [str(KILL_HOOK), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths)), **extra}


def _upscale(model: Path, out: Path, inputs: list[Path], **env: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "scisr.cli",
        "upscale",
        "--quiet",
        "--model",
        str(model),
        "--out",
        str(out),
        *map(str, inputs),
    ]
    return subprocess.run(command, env=_env(**env), capture_output=True, text=True, timeout=300, check=False)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("upscale-inputs")
    model = model_folder(folder / "model", identity=False)
    tiff = folder / "a.tif"
    tifffile.imwrite(tiff, physical((24, 20)).astype(np.float32))
    fits.PrimaryHDU(physical((20, 24), seed=1).astype(np.float32)).writeto(folder / "b.fits")
    mr = pydicom.dcmread(Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm")
    mr.save_as(folder / "c.dcm")
    return model, [tiff, folder / "b.fits", folder / "c.dcm"]


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, files = inputs
    folder = tmp_path_factory.mktemp("upscale-reference")
    result = _upscale(model, folder, files)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.mark.parametrize("kill_at", [1, 3])
def test_upscale_killed_mid_write_reruns_to_the_same_files(
    tmp_path: Path, inputs, reference: Path, kill_at: int
) -> None:
    model, files = inputs
    killed = _upscale(model, tmp_path / "out", files, SCISR_TEST_KILL_AT_WRITE=str(kill_at))
    assert killed.returncode == -9  # SIGKILL, with the kill_at-th output complete but not yet renamed
    left = _files(tmp_path / "out")
    assert len([n for n in left if ".tmp" in n]) == 1 and len(left) == kill_at  # earlier outputs whole
    rerun = _upscale(model, tmp_path / "out", files)
    assert rerun.returncode == 0, rerun.stderr
    out = _files(tmp_path / "out")
    assert not [n for n in out if ".tmp" in n]  # the killed run's temporary file is gone
    expected = _files(reference)
    assert out.keys() == expected.keys()
    for name in out:  # DICOM outputs get new UIDs per run; the pixels and everything else agree
        if name.endswith(".dcm"):
            a, b = pydicom.dcmread(tmp_path / "out" / name), pydicom.dcmread(reference / name)
            np.testing.assert_array_equal(a.pixel_array, b.pixel_array)
        elif name.endswith(".fits"):
            np.testing.assert_array_equal(fits.getdata(tmp_path / "out" / name), fits.getdata(reference / name))
        else:
            assert out[name] == expected[name], name


def _limit_file_size(limit: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_fails_the_write_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    """RLIMIT_FSIZE stands in for a full disk (the same EFBIG/ENOSPC path): the writer says what happened and the
    target is not created, so no rerun can trust a truncated file."""
    code = (
        "import numpy as np; from scisr.io.files import write_tiff; "
        f"write_tiff({str(tmp_path / 'big.tif')!r}, np.random.default_rng(0).random((512, 512)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=_limit_file_size(64 * 1024),
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert "big.tif: the disk is full or a file-size limit was reached" in last and "nothing was written" in last
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file


def test_upscale_into_a_full_disk_names_the_file_and_writes_nothing(tmp_path: Path, inputs) -> None:
    model, files = inputs
    command = [
        sys.executable,
        "-m",
        "scisr.cli",
        "upscale",
        "--quiet",
        "--model",
        str(model),
        "--out",
        str(tmp_path / "out"),
        str(files[0]),
    ]
    result = subprocess.run(
        command, env=_env(), capture_output=True, text=True, timeout=300, check=False, preexec_fn=_limit_file_size(4096)
    )
    assert result.returncode == 4, result.stderr  # an input that could not be written; one line, no traceback
    assert "a.tif" in result.stderr and "the disk is full or a file-size limit" in result.stderr
    assert "Traceback" not in result.stderr
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
