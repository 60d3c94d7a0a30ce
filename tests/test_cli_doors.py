"""Every `scisr` command given a path of the wrong kind says in one line what it expected and what it got,
exits 2, and shows no traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from astropy.io import fits

from scisr.cli import main

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture()
def paths(tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "folder"
    folder.mkdir()
    checkpoint = tmp_path / "net_g_latest.pth"
    checkpoint.write_bytes(b"PK\x03\x04" + b"\0" * 64)  # torch.save's zip container
    card = tmp_path / "model" / "model.yaml"
    card.parent.mkdir()
    card.write_text("name: x\n")
    table = tmp_path / "catalogue.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.BinTableHDU.from_columns([fits.Column("ra", "D", array=np.zeros(3))])]
    ).writeto(table)
    afile = tmp_path / "scores.tsv"
    afile.write_text("x\n")
    return {
        "folder": folder,
        "checkpoint": checkpoint,
        "card": card,
        "table": table,
        "file": afile,
        "sr": PYDICOM_FILES / "test-SR.dcm",
        "missing": tmp_path / "missing",
        "mr": PYDICOM_FILES / "MR_small.dcm",
    }


DOORS = [
    # (command line with {placeholders}, what the message must say was expected, and what was given)
    ("upscale --model {checkpoint} --out {folder} {mr}", "expected a model folder", "PyTorch checkpoint"),
    ("upscale --model {card} --out {folder} {mr}", "expected a model folder", "a model card file"),
    ("upscale --model {folder} --out {file} {mr}", "expected an output folder", "got a file"),
    ("info {folder}", "expected an image file", "got a folder"),
    ("info {missing}", "expected an image file", "no such file"),
    ("info {table}", "expected an image file", "holds no image"),
    ("info {sr}", "expected an image file", "not an image storage SOP class"),
    ("score {file} {folder} --out {missing}", "expected a folder of predicted", "got a file"),
    ("score {folder} {missing} --out {file}", "expected a folder of HR", "no such file"),
    ("score {folder} {folder} --out {folder}", "expected a file to write", "got a folder"),
    ("import-weights {folder} --out {missing}", "expected a packaged model name, a .pth file", "got a folder"),
    ("import-weights {checkpoint} --out {file}", "expected a model folder to write", "got a file"),
]


@pytest.mark.parametrize(("line", "expected", "got"), DOORS, ids=[d[0].split(" {")[0] + " " + d[1] for d in DOORS])
def test_wrong_kind_of_path(
    paths: dict[str, Path], capsys: pytest.CaptureFixture, line: str, expected: str, got: str
) -> None:
    argv = [part.format(**paths) for part in line.split()]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert expected in lines[0] and got in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
