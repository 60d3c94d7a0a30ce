"""Bounded byte-mutation fuzzing of one SciSR reader; run as a child process by tests/test_fuzz.py.

    python tests/fuzz_readers.py {dicom|fits|raster} SECONDS SEED OUT_DIR

Mutates seed files (flipped bytes, planted boundary integers, header-focused flips, truncation,
deleted and duplicated spans) and reads each mutant with `read_frames(max_bytes=MAX_BYTES)` the
way the extract phase does: in a reader worker process (`scisr.io.isolated.IsolatedReader`) with
an address-space limit (its size after imports + `HEADROOM`) and a time limit (`HANG_S`). Writes
OUT_DIR/result.json: inputs tried, outcomes by type (a ReadError by the type of its cause),
the slowest input's seconds, any exception other than ReadError, and every worker death (a signal
in native code, a limit, a hang), with the mutant kept in OUT_DIR for replay.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

MAX_BYTES = 32 << 20
HEADROOM = 1 << 30
HANG_S = 10.0
_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF, 0x8000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def dicom_seeds(folder: Path) -> list[Path]:
    import pydicom

    base = Path(pydicom.__file__).parent / "data" / "test_files"
    # one file per transfer syntax pydicom's test files hold, plus colour and multi-frame variants
    names = [
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
        "image_dfl.dcm",
        "MR_small_RLE.dcm",
        "rtdose_rle_1frame.dcm",
        "SC_rgb_rle_16bit_2frame.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEGLSNearLossless_16.dcm",
        "SC_rgb_jls_lossy_line.dcm",
        "MR_small_jp2klossless.dcm",
        "JPEG2000.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_jpeg_gdcm.dcm",
        "JPGExtended.dcm",
    ]
    return [base / n for n in names]


def fits_seeds(folder: Path) -> list[Path]:
    import gzip

    from astropy.io import fits

    rng = np.random.default_rng(0)
    ints = fits.PrimaryHDU(rng.integers(-2000, 2000, (24, 32), dtype=np.int16))
    ints.header["BSCALE"], ints.header["BZERO"], ints.header["BLANK"] = 2.0, 10.0, -2000
    ints.writeto(folder / "ints.fits")
    fits.PrimaryHDU(rng.normal(0, 1, (2, 16, 20)).astype(np.float32)).writeto(folder / "cube.fits")
    comp = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(rng.normal(0, 1, (32, 32)).astype(np.float32))])
    comp.writeto(folder / "comp.fits")
    (folder / "ints.fits.gz").write_bytes(gzip.compress((folder / "ints.fits").read_bytes()))
    image = rng.normal(100, 10, (32, 32)).astype(np.float32)
    for name, cards in _wcs_headers().items():
        hdu = fits.PrimaryHDU(image)
        for key, value in cards.items():
            hdu.header[key] = value
        hdu.writeto(folder / name)
    rice = fits.CompImageHDU(
        image, header=fits.PrimaryHDU(image).header, compression_type="RICE_1", quantize_level=16.0
    )
    for key, value in _wcs_headers()["sip.fits"].items():
        rice.header[key] = value
    fits.HDUList([fits.PrimaryHDU(), rice]).writeto(folder / "rice_sip.fits")
    names = ["ints.fits", "cube.fits", "comp.fits", "ints.fits.gz", *_wcs_headers(), "rice_sip.fits"]
    return [folder / n for n in names]


def _wcs_headers() -> dict[str, dict]:
    """Plate solutions written for these seeds (no third-party file): a DSS plate solution, TAN-SIP
    and TPV distortions, each on a small image, so mutations reach wcslib's parsers and fixes."""
    tan = {
        "CTYPE1": "RA---TAN",
        "CTYPE2": "DEC--TAN",
        "CRPIX1": 16.5,
        "CRPIX2": 16.5,
        "CRVAL1": 83.82,
        "CRVAL2": -5.39,
        "CD1_1": -2.8e-4,
        "CD1_2": 1e-6,
        "CD2_1": 1e-6,
        "CD2_2": 2.8e-4,
        "RADESYS": "ICRS",
        "EQUINOX": 2000.0,
        "DATE-OBS": "1999-01-01T00:00:00",
    }
    sip = {
        **tan,
        "CTYPE1": "RA---TAN-SIP",
        "CTYPE2": "DEC--TAN-SIP",
        "A_ORDER": 2,
        "B_ORDER": 2,
        "A_0_2": 1e-6,
        "A_1_1": -2e-6,
        "A_2_0": 3e-6,
        "B_0_2": 2e-6,
        "B_1_1": 1e-6,
        "B_2_0": -1e-6,
        "AP_ORDER": 2,
        "BP_ORDER": 2,
        "AP_0_2": -1e-6,
        "BP_2_0": 1e-6,
    }
    tpv = {
        **tan,
        "CTYPE1": "RA---TPV",
        "CTYPE2": "DEC--TPV",
        "PV1_0": 0.0,
        "PV1_1": 1.0,
        "PV1_2": 1e-4,
        "PV1_4": 2e-4,
        "PV1_7": -3e-5,
        "PV2_0": 0.0,
        "PV2_1": 1.0,
        "PV2_2": -1e-4,
        "PV2_5": 1e-4,
        "PV2_8": 2e-5,
    }
    dss = {
        "PLTRAH": 5,
        "PLTRAM": 35,
        "PLTRAS": 17.3,
        "PLTDECSN": "-",
        "PLTDECD": 5,
        "PLTDECM": 23,
        "PLTDECS": 28.0,
        "EQUINOX": 2000.0,
        "PLTSCALE": 67.2,
        "XPIXELSZ": 25.28,
        "YPIXELSZ": 25.28,
        "CNPIX1": 6000,
        "CNPIX2": 7000,
        "PPO3": 177600.0,
        "PPO6": 177600.0,
        **{
            f"AMDX{i}": v
            for i, v in enumerate([67.1, 0.002, -300.0, 1e-5, -2e-5, 1e-6, 0, 1e-6, 0, 1e-7, 1e-9, 0, 1e-9], start=1)
        },
        **{
            f"AMDY{i}": v
            for i, v in enumerate([67.1, -0.002, 250.0, -1e-5, 2e-5, 1e-6, 0, 1e-6, 0, 1e-7, 1e-9, 0, 1e-9], start=1)
        },
        "OBJCTRA": "05 35 17.30",
        "OBJCTDEC": "-05 23 28.0",
    }
    return {"tan.fits": tan, "sip.fits": sip, "tpv.fits": tpv, "dss.fits": dss}


def raster_seeds(folder: Path) -> list[Path]:
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (24, 32), dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 65535, (24, 32), dtype=np.uint16)).save(folder / "grey16.png")
    Image.fromarray(rng.integers(0, 256, (24, 32, 4), dtype=np.uint8), "RGBA").save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / "photo.jpg")
    Image.fromarray(rng.integers(0, 256, (24, 32), dtype=np.uint8)).convert("P").save(folder / "pal.gif")
    tifffile.imwrite(folder / "zip.tif", rng.integers(0, 4000, (2, 24, 32), dtype=np.uint16), compression="zlib")
    tifffile.imwrite(folder / "rgb16.tif", rng.integers(0, 65535, (24, 32, 3), dtype=np.uint16), photometric="rgb")
    # 16-bit RGB PNG: the per-byte decoder path
    import struct
    import zlib

    raw = b"".join(b"\x01" + rng.integers(0, 256, 32 * 6, dtype=np.uint8).tobytes() for _ in range(24))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 24, 16, 2, 0, 0, 0))
    (folder / "rgb16.png").write_bytes(png + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return sorted(p for p in folder.iterdir())


# Values planted in FITS header cards: extremes, wrong types, and other keywords' values.
_CARD_VALUES = (
    "0",
    "-1",
    "1E300",
    "-1E300",
    "1E-300",
    "2147483647",
    "-2147483648",
    "NaN",
    "T",
    "''",
    "'X'",
    "'RA---NCP'",
    "'DEC--NCP'",
    "'GLON-CAR'",
    "'RA---TAN-SIP'",
    "'DEC--TPV'",
    "'RA---ZPN'",
    "'deg'",
    "'DEG'",
    "'arcsec'",
    "'1999-99-99'",
    "'2000-01-01T99:99:99'",
    "'-'",
    "'FK4'",
    "'GAPPT'",
    "90.0",
    "-90.0",
    "360.0",
    "99",
)


def mutate_card(data: bytes, rng: np.random.Generator) -> bytes:
    """A FITS header card (key = value) of the first header given another value (`_CARD_VALUES`)."""
    end = data.find(b"END" + b" " * 77)
    cards = [i for i in range(0, max(end, 0), 80) if data[i + 8 : i + 10] == b"= " and data[i : i + 6] != b"SIMPLE"]
    if not cards:
        return data
    at = int(rng.choice(cards))
    value = str(rng.choice(_CARD_VALUES))
    card = (data[at : at + 10].decode("ascii", "replace") + value.rjust(20)).ljust(80)[:80].encode("ascii")
    return data[:at] + card + data[at + 80 :]


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    if data.startswith(b"SIMPLE") and rng.random() < 0.3:  # header values: reach wcslib's parsers and fixes
        out = data
        for _ in range(int(rng.integers(1, 4))):
            out = mutate_card(out, rng)
        return out
    out = bytearray(data)
    n = len(out)
    kind = int(rng.integers(0, 6))
    if kind == 0:  # flip a few bytes anywhere
        for pos in rng.integers(0, n, int(rng.integers(1, 9))):
            out[pos] ^= int(rng.integers(1, 256))
    elif kind == 1:  # plant a boundary integer
        value, width = int(rng.choice(_INTERESTING)), int(rng.choice([1, 2, 4]))
        pos = int(rng.integers(0, max(n - width, 1)))
        out[pos : pos + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, str(rng.choice(["little", "big"])))
    elif kind == 2:  # header-focused flips
        for pos in rng.integers(0, min(n, 1024), int(rng.integers(1, 4))):
            out[pos] ^= int(rng.integers(1, 256))
    elif kind == 3:  # truncate
        del out[int(rng.integers(0, n)) :]
    elif kind == 4:  # delete a span
        start = int(rng.integers(0, n))
        del out[start : start + int(rng.integers(1, 256))]
    else:  # duplicate a span
        start = int(rng.integers(0, n))
        out[start:start] = out[start : start + int(rng.integers(1, 256))]
    return bytes(out)


def main(reader: str, seconds: float, seed: int, out_dir: Path) -> None:
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    from scisr.io import ReadError
    from scisr.io.isolated import IsolatedReader, ReaderCrashed

    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{reader}-"))
    seeds = {"dicom": dicom_seeds, "fits": fits_seeds, "raster": raster_seeds}[reader](work)
    blobs = [(p.name, p.read_bytes()) for p in seeds]
    rng = np.random.default_rng(seed)
    outcomes: dict[str, int] = {}
    escaped, deaths, slowest, tried = [], [], 0.0, 0
    with IsolatedReader(memory_mb=HEADROOM >> 20, timeout_s=HANG_S) as worker:
        for path in seeds:  # start the worker and load every decoder before the clock runs
            with contextlib.suppress(ReadError):
                worker.call("scisr.io.readers:read_frames", path, max_bytes=MAX_BYTES)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            name, blob = blobs[int(rng.integers(0, len(blobs)))]
            mutant = mutate(blob, rng)
            suffix = name[name.index(".") :]
            current = out_dir / f"current{suffix}"
            current.write_bytes(mutant)
            start = time.monotonic()
            try:
                worker.call("scisr.io.readers:read_frames", current, max_bytes=MAX_BYTES)
                outcome = "ok"
            except ReaderCrashed as exc:  # what the test forbids: the reader died on this input
                outcome = "WORKER DIED"
                keep = out_dir / f"death-{tried}{suffix}"
                keep.write_bytes(mutant)
                deaths.append(f"{keep.name}: {exc}"[:300])
            except ReadError as exc:
                outcome = f"ReadError ({getattr(exc, 'cause_name', '') or 'own check'})"
                if "MemoryError" in outcome:  # what the test forbids: kept for replay
                    (out_dir / f"memory-{tried}{suffix}").write_bytes(mutant)
            except BaseException as exc:  # what the test forbids: recorded with the input kept
                outcome = f"ESCAPED {type(exc).__name__}"
                keep = out_dir / f"escaped-{tried}{suffix}"
                keep.write_bytes(mutant)
                escaped.append(f"{keep.name}: {type(exc).__name__}: {exc}"[:300])
            elapsed = time.monotonic() - start
            if elapsed > slowest:  # kept for a look when the test says an input was slow
                slowest = elapsed
                (out_dir / f"slowest{suffix}").write_bytes(mutant)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            tried += 1
        workers = worker.started
    current.unlink(missing_ok=True)
    result = {
        "reader": reader,
        "seeds": len(blobs),
        "inputs": tried,
        "seconds": seconds,
        "slowest_s": round(slowest, 3),
        "headroom": HEADROOM,
        "outcomes": dict(sorted(outcomes.items())),
        "escaped": escaped,
        "deaths": deaths,
        "workers": workers,
    }
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
