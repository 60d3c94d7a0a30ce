"""Reader worker: a file that kills the reader (a signal in native code, a limit, a hang) costs that one
file, named with the signal and the reader's step, and the phase goes on with a fresh worker."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest

from scisr import extract
from scisr.io import ReadError
from scisr.io.isolated import IsolatedReader, ReaderCrashed
from scisr.io.readers import read_frames
from scisr.sources.manifest import Entry, build_manifest, write_manifest

HERE = Path(__file__).resolve().parent
MR = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"
SECRET = bytes(range(32))


@pytest.fixture()
def helpers_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker imports tests/crash_helpers.py (it inherits PYTHONPATH)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))


def test_worker_reads_what_the_process_reads() -> None:
    with IsolatedReader(memory_mb=1024, timeout_s=30) as reader:
        frames = reader.call("scisr.io.readers:read_frames", MR)
        assert reader.call("scisr.io.readers:is_lossy", MR) is False
        with pytest.raises(ReadError, match="cannot open"):
            reader.call("scisr.io.readers:read_frames", MR.with_name("missing.dcm"))
        assert reader.started == 1  # a reader's own error does not cost the worker
    here = read_frames(MR)
    assert len(frames) == len(here) == 1
    np.testing.assert_array_equal(frames[0].image, here[0].image)
    assert frames[0].image.flags.writeable and frames[0].image.dtype == np.float32
    assert (frames[0].subject_id, frames[0].instance_id) == (here[0].subject_id, here[0].instance_id)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (b"CRASH-SEGV", r"a\.dcm: reader crashed: signal 11 \(SIGSEGV\) in a test decoder"),
        (b"CRASH-HANG", r"a\.dcm: reader timed out after 3 s"),
    ],
)
def test_a_dying_worker_costs_one_call(tmp_path: Path, helpers_on_path: None, marker: bytes, message: str) -> None:
    bad = tmp_path / "a.dcm"
    bad.write_bytes(marker + b"\0" * 200)
    with IsolatedReader(memory_mb=1024, timeout_s=3) as reader:
        with pytest.raises(ReaderCrashed, match=message):
            reader.call("crash_helpers:read_frames", bad)
        frames = reader.call("crash_helpers:read_frames", MR)  # a fresh worker
        assert reader.started == 2 and frames[0].image.shape == (64, 64)


def test_memory_limit_refuses_the_file_not_the_run(tmp_path: Path, helpers_on_path: None) -> None:
    bad = tmp_path / "big.fits"
    bad.write_bytes(b"CRASH-HOG" + b"\0" * 200)
    with IsolatedReader(memory_mb=512, timeout_s=60) as reader:
        with pytest.raises(ReadError, match=r"big.fits: (out of memory|reader crashed)"):
            reader.call("crash_helpers:read_frames", bad)
        assert reader.call("crash_helpers:read_frames", MR)[0].image.shape == (64, 64)


def test_extract_skips_the_file_that_crashes_the_reader(
    tmp_path: Path, helpers_on_path: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    ds = pydicom.dcmread(MR)
    for name in ("b_first.dcm", "d_last.dcm"):
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.PixelData = (ds.pixel_array + len(name)).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(raw / name)
    (raw / "c_crash.dcm").write_bytes(b"CRASH-SEGV" + b"\0" * 300)
    entries = [Entry(path=p.name, source=f"test:{p.name}", subject="") for p in sorted(raw.iterdir())]
    write_manifest(build_manifest(raw, entries), tmp_path / "MANIFEST.tsv")
    monkeypatch.setattr(extract, "READ_TARGET", "crash_helpers:read_frames")
    with IsolatedReader(memory_mb=1024, timeout_s=30) as reader:
        index = extract.extract_dataset(
            raw,
            tmp_path / "MANIFEST.tsv",
            tmp_path / "frames",
            tmp_path / "index.tsv",
            secret=SECRET,
            dataset="mri",
            frames={"pixel_data": ["ORIGINAL", "DERIVED"]},
            reader=reader,
        )
        assert reader.started == 2
    assert sorted(index["status"]) == ["ok", "ok", "skipped"]
    crashed = index[index["status"] == "skipped"].iloc[0]
    assert crashed["reason"].endswith(": reader crashed: signal 11 (SIGSEGV) in a test decoder")
    assert "c_crash" not in crashed["reason"]  # the reason names the file's pseudonym, not its name
    assert len(list((tmp_path / "frames").glob("*.tif"))) == 2


def test_command_line_limits_are_the_schema_defaults(root: Path) -> None:
    import yaml

    from scisr.io.isolated import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S

    extract_keys = yaml.safe_load((root / "config" / "schema.yaml").read_text())["properties"]["extract"]["properties"]
    assert extract_keys["reader_memory_mb"]["default"] == DEFAULT_MEMORY_MB
    assert extract_keys["reader_timeout_s"]["default"] == DEFAULT_TIMEOUT_S


def _fits_with(tmp_path: Path, name: str, cards: dict) -> Path:
    from astropy.io import fits

    hdu = fits.PrimaryHDU(np.arange(32 * 32, dtype=np.float32).reshape(32, 32))
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(tmp_path / name)
    return tmp_path / name


def test_wcslib_crashers_are_read_with_a_footprint(tmp_path: Path) -> None:
    """Regressions found by header-value fuzzing: wcslib's DSS translation died by SIGSEGV on a DSS keyword that
    is not a number beside a valid TAN solution, and on AMDY70 in a DSS plate solution. Read in the worker, so a
    regression fails this test instead of killing the test run."""
    from fuzz_readers import _wcs_headers

    tan, dss = _wcs_headers()["tan.fits"], _wcs_headers()["dss.fits"]
    stray = _fits_with(tmp_path, "stray.fits", {**tan, "AMDY1": "FK4"})
    beyond = _fits_with(tmp_path, "beyond.fits", {**dss, "AMDY70": 1e-7})
    with IsolatedReader(memory_mb=1024, timeout_s=60) as reader:
        (frame,) = reader.call("scisr.io.readers:read_frames", stray)
        ra, dec, radius = frame.sky
        assert (ra, dec) == pytest.approx((tan["CRVAL1"], tan["CRVAL2"]), abs=1e-4) and radius > 0  # TAN kept
        (frame,) = reader.call("scisr.io.readers:read_frames", beyond)
        assert frame.sky == pytest.approx((83.8220833, -5.3911111, 0.0))  # the plate dropped: OBJCTRA/OBJCTDEC
        assert reader.started == 1


@pytest.mark.parametrize("naxis", ["2147483647", "-1", "'RA---NCP'"])
def test_absurd_axis_counts_are_refused_before_astropy(tmp_path: Path, naxis: str) -> None:
    """NAXIS = 2147483647 kept astropy busy for minutes building its axis list; a negative NAXIS1 made it look
    for the next HDU at the same offset forever (and NAXIS1 = 'RA---NCP' made it build a 17 GB string). All are
    refused from the header text."""
    path = _fits_with(tmp_path, "axes.fits", {})
    data = bytearray(path.read_bytes())
    key = b"NAXIS   =" if naxis.isdigit() else b"NAXIS1  ="  # a count of axes, or a length
    at = data.find(key)
    data[at + 10 : at + 30] = naxis.rjust(20).encode()
    path.write_bytes(bytes(data))
    with IsolatedReader(memory_mb=1024, timeout_s=20) as reader:
        with pytest.raises(ReadError, match=r"axes.fits: a header declares NAXIS1? = .+; FITS allows"):
            reader.call("scisr.io.readers:read_frames", path)
        assert reader.started == 1


def test_jpeg_ls_without_a_height_is_refused_before_the_decoder(tmp_path: Path) -> None:
    """A JPEG-LS frame header with 0 lines (height left to a DNL marker) sent libjpeg's decoder into an endless
    search (found by fuzzing); the codestream check refuses it first."""
    data = bytearray((MR.parent / "JPEGLSNearLossless_16.dcm").read_bytes())
    at = data.find(b"\xff\xf7")  # SOF55: length (2), precision (1), then the height
    data[at + 5 : at + 7] = b"\0\0"
    (tmp_path / "dnl.dcm").write_bytes(bytes(data))
    with IsolatedReader(memory_mb=1024, timeout_s=20) as reader:
        with pytest.raises(ReadError, match=r"dnl.dcm: .*JPEG frame header gives 0 lines"):
            reader.call("scisr.io.readers:read_frames", tmp_path / "dnl.dcm")
        assert reader.started == 1
