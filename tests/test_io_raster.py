"""Raster reader: BT.601 luma in float on the original bit depth, 16-bit kept, TIFF pages."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from scisr.io import ReadError
from scisr.io.files import read_png16
from scisr.io.raster import BAND
from scisr.io.readers import read_frames

RNG = np.random.default_rng(42)


def bt601(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)


def test_rgb_png_exact_luma(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    (fr,) = read_frames(tmp_path / "c.png")
    np.testing.assert_array_equal(fr.image, bt601(rgb))
    assert fr.original_dtype == "uint8" and fr.modality == "PNG" and not fr.lossy and fr.subject_id == "c"


def test_alpha_dropped_and_grey_alpha(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 256, (8, 9, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_frames(tmp_path / "a.png")[0].image, bt601(rgba[..., :3]))
    la = RNG.integers(0, 256, (8, 9, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_frames(tmp_path / "la.png")[0].image, la[..., 0])


def test_palette_png_converted(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (10, 10, 3), dtype=np.uint8)
    im = Image.fromarray(rgb).quantize(colors=16)
    im.save(tmp_path / "p.png")
    expected = bt601(np.asarray(im.convert("RGB")))
    np.testing.assert_array_equal(read_frames(tmp_path / "p.png")[0].image, expected)


def test_16_bit_grey_png_keeps_values(tmp_path: Path) -> None:
    grey = np.array([[0, 255, 256, 1000, 65535]] * 4, dtype=np.uint16)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    (fr,) = read_frames(tmp_path / "g16.png")
    np.testing.assert_array_equal(fr.image, grey)
    assert fr.image.max() > 255


def write_png16_rgb(path: Path, rgb: np.ndarray, kinds: tuple[int, ...] = (0, 1, 2, 3, 4)) -> None:
    """A 16-bit grey (c=1), RGB or RGBA PNG written byte by byte (Pillow cannot write 16-bit colour),
    big-endian as the PNG standard says, with the scanline filter types `kinds` in turn."""
    h, w, c = rgb.shape
    raw = rgb.astype(">u2").view(np.uint8).reshape(h, w * c * 2).astype(np.int32)
    bpp, out = c * 2, []
    for y in range(h):
        x, up = raw[y], raw[y - 1] if y else np.zeros_like(raw[0])
        a = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
        ul = np.concatenate([np.zeros(bpp, np.int32), up[:-bpp]])
        kind = kinds[y % len(kinds)]
        if kind == 0:
            pred = np.zeros_like(x)
        elif kind == 1:
            pred = a
        elif kind == 2:
            pred = up
        elif kind == 3:
            pred = (a + up) // 2
        else:
            pa, pb, pc = np.abs(up - ul), np.abs(a - ul), np.abs(a + up - 2 * ul)
            pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, up, ul))
        out.append(bytes([kind]) + ((x - pred) % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(out))) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_png_not_reduced_to_8_bits(tmp_path: Path, channels: int) -> None:
    rgb = RNG.integers(0, 65536, (11, 7, channels), dtype=np.uint16)
    write_png16_rgb(tmp_path / "c16.png", rgb)
    (fr,) = read_frames(tmp_path / "c16.png")
    np.testing.assert_array_equal(fr.image, bt601(rgb[..., :3]))
    assert fr.original_dtype == "uint16"


@pytest.mark.parametrize("kinds", [(4,), (3,), (0, 1, 2, 3, 4)], ids=["paeth", "average", "mixed"])
def test_16_bit_colour_png_exact_across_bands_of_scanlines(tmp_path: Path, kinds: tuple[int, ...]) -> None:
    rgb = RNG.integers(0, 65536, (BAND + 37, 5, 3), dtype=np.uint16)  # more rows than one band
    rgb[: BAND // 2] //= 7  # smoother part: small filtered residues, as in real photos
    write_png16_rgb(tmp_path / "tall.png", rgb, kinds)
    (fr,) = read_frames(tmp_path / "tall.png")
    np.testing.assert_array_equal(fr.image, bt601(rgb))


def test_16_bit_png_is_big_endian_in_every_reader(tmp_path: Path) -> None:
    grey = np.array([[0x0102, 0x00FF, 0xFF00, 1, 65535]], dtype=np.uint16)  # a byte swap would show
    write_png16_rgb(tmp_path / "g16.png", grey[..., None])
    (fr,) = read_frames(tmp_path / "g16.png")
    np.testing.assert_array_equal(fr.image, grey.astype(np.float32))
    np.testing.assert_array_equal(read_png16(tmp_path / "g16.png"), grey.astype(np.float32) / 65535)
    rgb = np.stack([grey, grey[:, ::-1], grey], axis=-1)
    write_png16_rgb(tmp_path / "c16.png", rgb)
    (fr,) = read_frames(tmp_path / "c16.png")
    np.testing.assert_array_equal(fr.image, bt601(rgb))


def test_16_bit_colour_png_bomb_refused_before_inflating(tmp_path: Path) -> None:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    side = 100_000  # 10^10 pixels: 60 GB of 16-bit RGB if it were inflated
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 2, 0, 0, 0)
    bomb = zlib.compress(bytes(side * 6 + 1) * 64, 9)
    (tmp_path / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", bomb) + chunk(b"IEND", b"")
    )
    with pytest.raises(ReadError, match=r"^bomb\.png: .*over the limit"):
        read_frames(tmp_path / "bomb.png")


def test_16_bit_colour_png_truncated_data(tmp_path: Path) -> None:
    write_png16_rgb(tmp_path / "c16.png", RNG.integers(0, 65536, (8, 8, 3), dtype=np.uint16))
    data = (tmp_path / "c16.png").read_bytes()
    start = data.index(b"IDAT") + 4
    body = zlib.decompress(data[start:-16])  # IDAT body ends before its CRC and the IEND chunk
    short = zlib.compress(body[: len(body) // 2])
    (tmp_path / "short.png").write_bytes(
        data[: start - 8] + struct.pack(">I", len(short)) + b"IDAT" + short + b"\0" * 4 + data[-12:]
    )
    with pytest.raises(ReadError, match=r"^short\.png: PNG image data too short"):
        read_frames(tmp_path / "short.png")


def test_tiff_pages_and_dtypes(tmp_path: Path) -> None:
    pages = RNG.random((3, 12, 10)).astype(np.float32) * 1e5 - 5e4
    tifffile.imwrite(tmp_path / "f.tif", pages, photometric="minisblack")  # three grey pages
    frames = read_frames(tmp_path / "f.tif")
    assert [f.frame for f in frames] == [0, 1, 2]
    for fr, page in zip(frames, pages):
        np.testing.assert_array_equal(fr.image, page)
    rgb16 = RNG.integers(0, 65536, (6, 5, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb16, photometric="rgb")
    (fr,) = read_frames(tmp_path / "rgb.tif")
    np.testing.assert_array_equal(fr.image, bt601(rgb16))
    assert fr.modality == "TIFF" and fr.original_dtype == "uint16"
    planar = np.moveaxis(rgb16, -1, 0)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_frames(tmp_path / "planar.tif")[0].image, bt601(rgb16))


def test_gif_first_frame_and_jpeg_lossy(tmp_path: Path) -> None:
    first = np.full((16, 16), 10, np.uint8)
    second = np.full((16, 16), 200, np.uint8)
    Image.fromarray(first).save(tmp_path / "a.gif", save_all=True, append_images=[Image.fromarray(second)])
    (fr,) = read_frames(tmp_path / "a.gif")
    assert np.all(fr.image == 10)
    Image.fromarray(RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "j.jpg")
    (fr,) = read_frames(tmp_path / "j.jpg")
    assert fr.lossy and fr.modality == "JPEG"


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ReadError, match=r"^notes\.txt: not a DICOM, FITS or raster image"):
        read_frames(tmp_path / "notes.txt")


def test_tiff_with_a_circular_chain_of_directories_is_refused_at_once(tmp_path: Path) -> None:
    import time

    tifffile.imwrite(tmp_path / "ok.tif", np.arange(24 * 32, dtype=np.uint16).reshape(24, 32))
    data = bytearray((tmp_path / "ok.tif").read_bytes())
    first = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[first : first + 2])[0]
    nxt = first + 2 + 12 * count
    data[nxt : nxt + 4] = struct.pack("<I", first)  # the last directory points back to the first
    (tmp_path / "loop.tif").write_bytes(bytes(data))
    start = time.monotonic()
    with pytest.raises(ReadError, match=r"^loop\.tif: TIFF's chain of image directories loops back"):
        read_frames(tmp_path / "loop.tif")
    assert time.monotonic() - start < 2.0
