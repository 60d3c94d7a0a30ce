"""Bounded byte-mutation fuzzing of one SciSR reader; run as a child process by tests/test_fuzz.py.

    python tests/fuzz_readers.py {dicom|fits|raster} SECONDS SEED OUT_DIR

Mutates seed files (flipped bytes, planted boundary integers, header-focused flips, truncation,
deleted and duplicated spans), reads each mutant with `read_frames(max_bytes=MAX_BYTES)` under
an address-space limit (RLIMIT_AS = the interpreter's size after imports + `HEADROOM`), and
writes OUT_DIR/result.json: inputs tried, outcomes by type, the slowest input's seconds and any
exception other than ReadError (with the mutant kept in OUT_DIR for replay). A native abort
or a hang kills the child; OUT_DIR/current.* is then the input that did it.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

MAX_BYTES = 32 << 20
HEADROOM = 1 << 30
_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFF, 0x8000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def dicom_seeds(folder: Path) -> list[Path]:
    import pydicom

    base = Path(pydicom.__file__).parent / "data" / "test_files"
    names = ["MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
             "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "rtdose_rle_1frame.dcm"]
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
    return [folder / n for n in ("ints.fits", "cube.fits", "comp.fits", "ints.fits.gz")]


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


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
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
    from scisr.io.readers import read_frames

    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{reader}-"))
    seeds = {"dicom": dicom_seeds, "fits": fits_seeds, "raster": raster_seeds}[reader](work)
    blobs = [(p.name, p.read_bytes()) for p in seeds]
    for path in seeds:  # load every decoder before the address-space limit is set
        try:
            read_frames(path, max_bytes=MAX_BYTES)
        except ReadError:
            pass
    vm = int(next(line for line in open("/proc/self/status") if line.startswith("VmSize")).split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + HEADROOM, vm + HEADROOM))

    rng = np.random.default_rng(seed)
    outcomes: dict[str, int] = {}
    escaped, slowest, tried = [], 0.0, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        name, blob = blobs[int(rng.integers(0, len(blobs)))]
        mutant = mutate(blob, rng)
        suffix = name[name.index(".") :]
        current = out_dir / f"current{suffix}"
        current.write_bytes(mutant)
        start = time.monotonic()
        try:
            read_frames(current, max_bytes=MAX_BYTES)
            outcome = "ok"
        except ReadError as exc:
            cause = exc.__cause__
            outcome = f"ReadError ({type(cause).__name__ if cause is not None else 'own check'})"
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
    current.unlink(missing_ok=True)
    result = {"reader": reader, "seeds": len(blobs), "inputs": tried, "seconds": seconds, "slowest_s": round(slowest, 3),
              "address_space_limit": vm + HEADROOM, "outcomes": dict(sorted(outcomes.items())), "escaped": escaped}
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
