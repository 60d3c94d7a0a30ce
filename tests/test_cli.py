"""The `scisr` command and the job-log helper."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from scisr.cli import build_parser, main
from scisr.config import schema_default
from scisr.io.files import write_png16
from scisr.logs import log_to

MR_SMALL = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"


def test_info_prints_frames_in_physical_units(capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(MR_SMALL)]) == 0
    out = capsys.readouterr().out
    expected = pydicom.dcmread(MR_SMALL).pixel_array
    assert "64x64" in out and "MR" in out
    assert f"range [{expected.min():g}, {expected.max():g}]" in out


def test_info_reports_an_unreadable_file_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"garbage")
    assert main(["info", str(bad)]) == 1
    assert "broken.dcm" in capsys.readouterr().err


def test_score_writes_a_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        hr = rng.random((32, 32))
        write_png16(tmp_path / "hr" / f"{name}.png", hr)
        write_png16(tmp_path / "pred" / f"{name}.png", np.clip(hr + 0.1, 0, 1))
    out = tmp_path / "scores.tsv"
    assert main(["score", str(tmp_path / "pred"), str(tmp_path / "hr"), "--out", str(out), "--border", "4"]) == 0
    assert out.is_file() and "2 images" in capsys.readouterr().out


def test_log_to_captures_logging_and_stderr_and_records_failures(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "job.log"
    with pytest.raises(RuntimeError), log_to(log):
        logging.getLogger("scisr.test").info("hello from the library")
        print("progress bar text", file=sys.stderr)
        raise RuntimeError("boom")
    text = log.read_text()
    assert "hello from the library" in text and "progress bar text" in text
    assert "RuntimeError: boom" in text
    assert sys.stderr is sys.__stderr__ or not sys.stderr.closed


def test_upscale_tiles_as_the_study_does_unless_told_otherwise() -> None:
    """The command's tile and overlap defaults are config/schema.yaml's infer.tile and infer.overlap (one place)."""
    from scisr.upscale import Options

    parse = build_parser().parse_args
    args = parse(["upscale", "x.tif", "--model", "m", "--out", "o"])
    expected = (schema_default("infer.tile"), schema_default("infer.overlap"))
    assert (args.tile, args.overlap) == expected
    options = Options(model=Path("m"), out=Path("o"))
    assert (options.tile, options.overlap) == expected
    assert parse(["upscale", "x.tif", "--model", "m", "--out", "o", "--overlap", "auto"]).overlap is None
    with pytest.raises(SystemExit):
        parse(["upscale", "x.tif", "--model", "m", "--out", "o", "--overlap", "wide"])
