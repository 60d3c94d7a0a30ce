"""A generated corpus of bad and odd input files, each with the outcome SciSR must give it.

Built from pydicom's bundled test files (and pydicom-data's, when installed: tests/corpus_dicom.py) plus
synthetic FITS/PNG/TIFF written here. `build_corpus(folder)` writes the files and returns the cases;
tests/test_corpus.py runs them all through the extract phase and checks every outcome.
Run `python tests/corpus.py` to print the table (kind -> outcome) for a report.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from astropy.io import fits
from corpus_case import Case
from corpus_dicom import dicom_cases
from PIL import Image

LIMIT = 64 << 20  # the max_bytes the corpus is extracted with


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, depth: int, colour: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _raster_cases(out: Path) -> list[Case]:
    rng = np.random.default_rng(7)
    cases: list[Case] = []
    bomb = zlib.compressobj(9)
    idat = b"".join(bomb.compress(bytes(8 << 20)) for _ in range(12)) + bomb.flush()
    (out / "png16_bomb.png").write_bytes(_png(64, 64, 16, 2, idat))
    cases.append(
        Case(
            "16-bit RGB PNG: 64x64 header, 96 MiB of image data (bomb)",
            "png16_bomb.png",
            "skipped",
            "inflates to more than the 24,640 bytes",
        )
    )
    (out / "png_huge_header.png").write_bytes(_png(100000, 100000, 16, 0, zlib.compress(b"\0" * 100)))
    cases.append(Case("PNG header declaring 100000x100000", "png_huge_header.png", "skipped", "over the limit"))
    rows = b"".join(b"\0" + bytes(rng.integers(0, 256, 64 * 2, dtype=np.uint8)) for _ in range(64))
    (out / "png_short.png").write_bytes(_png(64, 64, 16, 0, zlib.compress(rows)[:-40]))
    cases.append(Case("16-bit grey PNG with truncated image data", "png_short.png", "skipped", "corrupt or truncated"))
    (out / "garbage.png").write_bytes(bytes(rng.integers(0, 256, 5000, dtype=np.uint8)))
    cases.append(Case("random bytes named .png", "garbage.png", "skipped", "not a DICOM, FITS or raster image"))
    (out / "empty.png").write_bytes(b"")
    cases.append(Case("zero-length .png", "empty.png", "skipped", "not a DICOM, FITS or raster image"))
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(out / "photo.jpg", quality=90)
    data = (out / "photo.jpg").read_bytes()
    (out / "photo.jpg").write_bytes(data[: len(data) // 2])
    cases.append(Case("JPEG file cut in half", "photo.jpg", "skipped", "not a DICOM, FITS or raster image"))
    Image.fromarray(np.full((4, 4), 9, np.uint8)).save(out / "tiny.png")
    cases.append(Case("4x4 PNG", "tiny.png", "skipped", "too small: 4x4"))

    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(out / "rgba.png")
    cases.append(Case("RGBA PNG (alpha dropped, BT.601 luma)", "rgba.png", "ok"))
    two = rng.integers(0, 60000, (32, 32, 2), dtype=np.uint16)
    tifffile.imwrite(out / "two_channel.tif", two, photometric="minisblack", planarconfig="contig")
    cases.append(Case("2-channel TIFF (no alpha)", "two_channel.tif", "skipped", "2 grey samples per pixel"))
    tifffile.imwrite(
        out / "grey_alpha.tif", two, photometric="minisblack", planarconfig="contig", extrasamples=["unassalpha"]
    )
    cases.append(Case("grey + alpha TIFF (alpha dropped)", "grey_alpha.tif", "ok"))
    tifffile.imwrite(
        out / "four_channel.tif",
        rng.integers(0, 255, (32, 32, 4), dtype=np.uint8),
        photometric="minisblack",
        planarconfig="contig",
    )
    cases.append(Case("4-channel grey TIFF", "four_channel.tif", "skipped", "4 grey samples per pixel"))
    tifffile.imwrite(out / "tiff_huge.tif", rng.integers(0, 255, (32, 32), dtype=np.uint16))
    raw = bytearray((out / "tiff_huge.tif").read_bytes())
    for tag in (256, 257):  # ImageWidth, ImageLength (SHORT or LONG entries of the first IFD)
        offset = struct.unpack("<I", raw[4:8])[0]
        for i in range(struct.unpack("<H", raw[offset : offset + 2])[0]):
            entry = offset + 2 + 12 * i
            if struct.unpack("<H", raw[entry : entry + 2])[0] == tag:
                raw[entry + 2 : entry + 12] = struct.pack("<HII", 4, 1, 60000)
    (out / "tiff_huge.tif").write_bytes(bytes(raw))
    cases.append(Case("TIFF declaring 60000x60000", "tiff_huge.tif", "skipped", "over the limit"))
    return cases


def _fits_cases(out: Path) -> list[Case]:
    rng = np.random.default_rng(11)
    cases: list[Case] = []
    good = rng.normal(100, 10, (32, 32)).astype(np.float32)

    def write(name: str, data, status: str, reason: str, kind: str, **cards) -> None:
        hdu = fits.PrimaryHDU(data)
        for key, value in cards.items():
            hdu.header[key] = value
        hdu.writeto(out / name, overwrite=True)
        cases.append(Case(kind, name, status, reason))

    write(
        "nan_only.fits",
        np.full((32, 32), np.nan, np.float32),
        "skipped",
        "no finite pixel values",
        "FITS, every pixel NaN",
    )
    write("constant.fits", np.full((32, 32), 3.0, np.float32), "skipped", "constant image", "FITS, constant image")
    write("no_image.fits", None, "skipped", "no image HDU", "FITS without image data (NAXIS 0)")
    write("cube.fits", rng.normal(0, 1, (2, 32, 32)).astype(np.float32), "ok", "", "FITS cube (2 planes)")
    for name, bitpix, kind in (("bitpix7.fits", 7, "FITS BITPIX 7"), ("bitpix_text.fits", "abc", "FITS BITPIX 'abc'")):
        path = out / name
        fits.PrimaryHDU(good).writeto(path, overwrite=True)
        raw = bytearray(path.read_bytes())
        card = f"BITPIX  = {bitpix!s:>20}".ljust(80).encode()
        raw[80:160] = card
        path.write_bytes(bytes(raw))
        cases.append(Case(kind, name, "skipped", "BITPIX" if bitpix == 7 else "not a readable FITS file"))
    path = out / "naxis_huge.fits"
    fits.PrimaryHDU(good).writeto(path, overwrite=True)
    raw = bytearray(path.read_bytes())
    for i, axis in ((3, "NAXIS1"), (4, "NAXIS2")):
        raw[80 * i : 80 * (i + 1)] = f"{axis:<8}= {100000:>20}".ljust(80).encode()
    path.write_bytes(bytes(raw))
    cases.append(Case("FITS declaring 100000x100000 float32", "naxis_huge.fits", "skipped", "over the limit"))
    fits.PrimaryHDU(good).writeto(out / "short.fits", overwrite=True)
    data = (out / "short.fits").read_bytes()
    (out / "short.fits").write_bytes(data[: 2880 + 1000])
    cases.append(Case("FITS with its data section cut short", "short.fits", "skipped", "cannot reshape array"))
    with gzip.open(out / "bomb.fits.gz", "wb", compresslevel=9) as fh:
        for _ in range(10):
            fh.write(bytes(8 << 20))
    cases.append(
        Case("gzipped FITS inflating to 80 MiB of zeros (bomb)", "bomb.fits.gz", "skipped", "the gzip stream declares")
    )
    (out / "zeros.fits").write_bytes(b"SIMPLE  =                    T" + bytes(4 << 20))
    cases.append(Case("'SIMPLE' then 4 MiB of zeros (no END card)", "zeros.fits", "skipped", "no END card"))
    return cases


def build_corpus(folder: Path) -> list[Case]:
    """Write every corpus file into `folder`; return the cases (names unique)."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = dicom_cases(folder) + _raster_cases(folder) + _fits_cases(folder)
    assert len({c.name for c in cases}) == len(cases)
    return cases


if __name__ == "__main__":  # print the corpus table (kind -> outcome) from a real extract run
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from scisr.deid import reidentify
    from scisr.extract import extract_dataset
    from scisr.sources.manifest import Entry, build_manifest

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        corpus = build_corpus(raw)
        table = build_manifest(raw, [Entry(path=c.name, source="corpus", subject="") for c in corpus])
        index = extract_dataset(
            raw,
            table,
            Path(tmp) / "frames",
            Path(tmp) / "index.tsv",
            secret=bytes(32),
            key_map=Path(tmp) / "keys.tsv",
            frames={"pixel_data": []},
            max_bytes=LIMIT,
        )
        index = reidentify(index, Path(tmp) / "keys.tsv")
        first = index.sort_values("frame").drop_duplicates("source_path").set_index("source_path")
        print("| kind | file | outcome | reason |\n|---|---|---|---|")
        for c in corpus:
            row = first.loc[c.name]
            print(f"| {c.kind} | {c.name} | {row['status']} | {row['reason'][:160].replace('|', '/')} |")
