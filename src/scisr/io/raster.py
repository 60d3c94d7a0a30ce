"""Raster reader (PNG, JPEG, TIFF, GIF, BMP, WebP, ...): grey float32 in the file's own units.

Conventions:
- Colour becomes BT.601 luma 0.299 R + 0.587 G + 0.114 B, computed in float on the original
  bit depth (0..255 stays 0..255, 0..65535 stays 0..65535); alpha is dropped (RGBA, grey +
  alpha; extra samples after R, G, B too); palette images are expanded to RGB first; CMYK,
  YCbCr, LAB and HSV go through Pillow's RGB conversion. Grey images keep their values exactly.
- Refused (ReadError): TIFF pages with several grey samples that are not grey + alpha (a
  2-channel TIFF: which one is the image is not guessed); a declared size over `max_bytes`;
  PNG image data inflating to more or less than its header declares (checked in bounded memory).
- TIFF is read with tifffile (any dtype, every full-resolution page is a frame; reduced
  pyramid/thumbnail pages are skipped). GIF and other animated formats give their first frame.
- 16-bit grey PNGs are read by Pillow (mode "I;16", big-endian samples decoded to exact uint16 values,
  as `scisr.io.files.read_png16` reads the study's own PNGs).
- 16-bit colour (RGB/RGBA) PNGs are decoded here, because no maintained reader we depend on keeps their
  bits: measured with Pillow 13.0.0, `Image.open` gives mode "RGB" uint8 holding the high byte of each
  sample, and imageio 2.x reads PNG through Pillow (uint8 too); tifffile reads no PNG. (imagecodecs'
  libpng decoder would, at the cost of another binary dependency for a rare input.) The scanline
  filters are undone with numpy, one anti-diagonal of pixels at a time (timings: bench/README.md, "Readers").
  The header's size is checked against Pillow's decompression-bomb limit (2 x `Image.MAX_IMAGE_PIXELS`)
  before anything is inflated, and never more bytes are inflated than the header promises.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from scisr.io.frame import Frame, ReadError, luma, native_dtype_name
from scisr.io.limits import DEFAULT_MAX_BYTES, check_declared, inflated_size, reader_edge

_LOSSY_FORMATS = {"JPEG", "MPO", "WEBP"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def read_raster(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Frame]:
    """Read a raster image file as grey float32 frames (see module docstring)."""
    path = Path(path)
    with reader_edge(path, "not a readable raster image"):
        return _read(path, max_bytes)


def _read(path: Path, max_bytes: int) -> list[Frame]:
    with open(path, "rb") as fh:
        head = fh.read(32)
    if head.startswith(_PNG_SIGNATURE):
        check_png(path, max_bytes)
    if head.startswith(_TIFF_SIGNATURES):
        check_tiff_chain(path)
        arrays, fmt, lossy = _read_tiff(path, max_bytes), "TIFF", False
    elif head.startswith(_PNG_SIGNATURE) and len(head) > 25 and head[24] == 16 and head[25] in (2, 6):
        arrays, fmt, lossy = [_read_png16_colour(path)], "PNG", False
    else:
        array, colour, fmt = _read_pillow(path, max_bytes)
        arrays, lossy = [(array, colour)], fmt in _LOSSY_FORMATS
    frames = []
    for i, (array, colour) in enumerate(arrays):
        image = luma(array[..., :3]) if colour else array.astype(np.float64)
        frames.append(
            Frame(
                image=image.astype(np.float32),
                frame=i,
                subject_id=path.stem,
                series_id=path.stem,
                instance_id="",
                modality=fmt,
                original_dtype=native_dtype_name(array.dtype),
                lossy=lossy,
                meta={"format": "raster", "file_format": fmt, "colour": colour},
            )
        )
    return frames


def is_raster_lossy(path: str | os.PathLike) -> bool:
    """True for formats that are (normally) lossy: JPEG, MPO, WebP."""
    try:
        with Image.open(path) as im:
            return im.format in _LOSSY_FORMATS
    except Exception:
        return False


def _read_pillow(path: Path, max_bytes: int) -> tuple[np.ndarray, bool, str]:
    """First frame via Pillow as (array, is_colour, format); colour arrays are (..., 3 or 4)."""
    try:
        with Image.open(path) as im:
            im.seek(0)
            fmt, mode = im.format or path.suffix.lstrip(".").upper(), im.mode
            width, height = im.size
            depth = 4 if mode in ("I", "F") else 2 if mode.startswith("I;16") else 1
            check_declared(
                path, width * height * max(len(im.getbands()), 3) * depth, max_bytes, f"{fmt} {width}x{height} {mode}"
            )
            if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
                return np.asarray(im), False, fmt
            if mode in ("LA", "La"):
                return np.asarray(im)[..., 0], False, fmt
            if mode in ("RGB", "RGBA", "RGBX", "RGBa"):
                return np.asarray(im), True, fmt
            if mode in ("P", "PA"):
                return np.asarray(im.convert("RGBA")), True, fmt
            return np.asarray(im.convert("RGB")), True, fmt  # CMYK, YCbCr, LAB, HSV
    except Image.DecompressionBombError as exc:
        raise ReadError(f"{path.name}: {exc}; convert it to a TIFF, which is read without that limit") from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ReadError(
            f"{path.name}: not a DICOM, FITS or raster image that Pillow can read ({exc}); "
            "check the file type (a DICOM without the 128-byte preamble needs a .dcm suffix)"
        ) from exc


def _read_tiff(path: Path, max_bytes: int) -> list[tuple[np.ndarray, bool]]:
    """Every full-resolution TIFF page as (array, is_colour); declared sizes checked first."""
    try:
        with tifffile.TiffFile(path) as tif:
            pages = [page for page in tif.pages if not getattr(page, "is_reduced", False)]
            declared = sum(math.prod(page.shape) * page.dtype.itemsize for page in pages if page.dtype is not None)
            check_declared(path, declared, max_bytes, f"TIFF ({len(pages)} page(s))")
            size = path.stat().st_size
            for page in pages:  # tifffile reads a strip's declared byte count before looking at the file size
                if any(o + n > size for o, n in zip(page.dataoffsets, page.databytecounts)):
                    raise ReadError(
                        f"{path.name}: TIFF page {page.index} has strips or tiles past the end of the file; "
                        "truncated or damaged"
                    )
            return [_tiff_page(page, path) for page in pages]
    except ReadError:
        raise
    except Exception as exc:
        hint = "; compressed TIFFs may need imagecodecs (pip install imagecodecs)" if "imagecodecs" in str(exc) else ""
        raise ReadError(f"{path.name}: cannot read TIFF ({type(exc).__name__}: {exc}){hint}") from exc


def _tiff_page(page: tifffile.TiffPage, path: Path) -> tuple[np.ndarray, bool]:
    photometric = page.photometric
    samples = page.samplesperpixel
    if photometric in (tifffile.PHOTOMETRIC.MINISBLACK, tifffile.PHOTOMETRIC.MINISWHITE) and samples > 1:
        extras = tuple(int(e) for e in (page.extrasamples or ()))
        if samples != 2 or extras not in ((1,), (2,)):
            raise ReadError(
                f"{path.name}: TIFF page {page.index} has {samples} grey samples per pixel "
                f"(ExtraSamples {extras or 'none'}), "
                "not grey + alpha; SciSR does not guess which channel is the image: save each channel as its own file"
            )
    array = page.asarray()
    if samples > 1 and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
        array = np.moveaxis(array, -3, -1)
    if photometric == tifffile.PHOTOMETRIC.PALETTE:
        colormap = np.asarray(page.colormap)  # (3, 2**bits), 16-bit
        return colormap[:, array].transpose(1, 2, 0), True
    if photometric == tifffile.PHOTOMETRIC.RGB and samples >= 3:
        return array, True
    if samples > 1:
        array = array[..., 0]  # grey + alpha: alpha dropped
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE and array.dtype.kind == "u":
        array = np.iinfo(array.dtype).max - array
    if array.ndim != 2:
        raise ReadError(f"TIFF page {page.index}: unsupported shape {array.shape} ({photometric.name})")
    return array, False


MAX_TIFF_PAGES = 65536
MAX_TIFF_TAGS = 4096


def check_tiff_chain(path: Path) -> None:
    """Walk a TIFF's chain of IFDs before tifffile does: every IFD inside the file, a sane tag count, no
    IFD visited twice (a circular chain made tifffile spin for tens of seconds on a 3 KB fuzzed file)."""
    if path.stat().st_size < 16:
        raise ReadError(f"{path.name}: TIFF header is truncated")
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:  # no full read
        _walk_ifds(path, data)


def _walk_ifds(path: Path, data: mmap.mmap) -> None:
    order = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(order + "H", data[2:4])[0] == 43
    count_fmt, entry_size, offset_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    width = struct.calcsize(offset_fmt)
    start = 8 if big else 4
    if len(data) < start + width:
        raise ReadError(f"{path.name}: TIFF header is truncated")
    offset = struct.unpack(order + offset_fmt, data[start : start + width])[0]
    seen: set[int] = set()
    while offset:
        if offset in seen:
            raise ReadError(
                f"{path.name}: TIFF's chain of image directories loops back to offset {offset}; damaged file"
            )
        if len(seen) >= MAX_TIFF_PAGES:
            raise ReadError(f"{path.name}: TIFF has more than {MAX_TIFF_PAGES} image directories")
        seen.add(offset)
        head = struct.calcsize(count_fmt)
        if offset + head > len(data):
            raise ReadError(f"{path.name}: TIFF image directory at offset {offset} lies past the end of the file")
        tags = struct.unpack(order + count_fmt, data[offset : offset + head])[0]
        end = offset + head + tags * entry_size
        if tags > MAX_TIFF_TAGS or end + width > len(data):
            raise ReadError(
                f"{path.name}: TIFF image directory at offset {offset} declares {tags} tags, "
                "more than the file holds; damaged file"
            )
        offset = struct.unpack(order + offset_fmt, data[end : end + width])[0]


def check_png(path: Path, max_bytes: int) -> None:
    """Refuse a PNG before decoding: declared size over `max_bytes`, or image data that inflates
    to more (a decompression bomb) or less (truncated) than its IHDR declares."""
    data = path.read_bytes()
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if pos + 12 + length > len(data):  # Pillow reads a chunk's declared length before checking
            raise ReadError(f"{path.name}: PNG chunk {kind!r} runs past the end of the file; truncated or damaged")
        if kind == b"IHDR" and length >= 13:
            header = struct.unpack(">IIBBBBB", data[pos + 8 : pos + 21])
        elif kind == b"IDAT":
            idat.append(data[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None:
        raise ReadError(f"{path.name}: PNG without IHDR chunk; the file is damaged")
    width, height, depth, colour, _, _, interlace = header
    channels = _PNG_CHANNELS.get(colour)
    if channels is None or depth not in (1, 2, 4, 8, 16) or not width or not height:
        raise ReadError(
            f"{path.name}: PNG header is invalid ({width}x{height}, bit depth {depth}, colour type {colour})"
        )
    check_declared(path, width * height * max(channels, 3) * max(depth // 8, 1), max_bytes, f"PNG {width}x{height}")
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w and h:
            expected += h * (1 + (w * channels * depth + 7) // 8)
    try:
        size = inflated_size(b"".join(idat), 15, expected)
    except zlib.error as exc:
        raise ReadError(f"{path.name}: PNG image data is corrupt or truncated ({exc})") from exc
    if size > expected:
        raise ReadError(
            f"{path.name}: PNG image data inflates to more than the {expected:,} bytes its {width}x{height} "
            "header declares (a decompression bomb or a damaged file); refused"
        )
    if size < expected:
        raise ReadError(f"{path.name}: PNG image data too short: {size} of {expected} bytes; the file is truncated")


def _read_png16_colour(path: Path) -> tuple[np.ndarray, bool]:
    """Decode a non-interlaced 16-bit RGB/RGBA PNG to a (H, W, 3|4) uint16 array."""
    data = path.read_bytes()
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ReadError(f"{path.name}: PNG without IHDR chunk; the file is damaged")
    width, height, _, colour, _, _, interlace = header
    if interlace:
        raise ReadError(f"{path.name}: interlaced 16-bit colour PNG is not supported; re-save it without interlacing")
    limit = Image.MAX_IMAGE_PIXELS  # Pillow's decompression-bomb limit, applied as Pillow applies it
    if limit and width * height > 2 * limit:
        raise ReadError(
            f"{path.name}: {width}x{height} pixels exceeds the decompression-bomb limit of {2 * limit} pixels; "
            "convert it to a TIFF, which is read without that limit"
        )
    channels = 3 if colour == 2 else 4
    bpp, stride = 2 * channels, width * 2 * channels
    expected = height * (stride + 1)
    try:  # never inflate more than the header promises
        raw = np.frombuffer(zlib.decompressobj().decompress(b"".join(idat), expected), np.uint8)
    except zlib.error as exc:
        raise ReadError(f"{path.name}: PNG image data is corrupt ({exc})") from exc
    if raw.size < expected:
        raise ReadError(f"{path.name}: PNG image data too short: {raw.size} of {expected} bytes")
    rows = raw.reshape(height, stride + 1)
    if rows[:, 0].max(initial=0) > 4:
        raise ReadError(f"{path.name}: unknown PNG filter type {rows[:, 0].max()}; the file is damaged")
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for start in range(0, height, BAND):
        band = rows[start : start + BAND]
        if band[:, 0].max() <= 2:
            for y, row in enumerate(band):
                out[start + y] = prev = _unfilter_simple(int(row[0]), row[1:], prev, bpp)
        else:
            out[start : start + len(band)] = _unfilter_band(band, prev, bpp)
            prev = out[start + len(band) - 1]
    return out.view(">u2").reshape(height, width, channels), True


BAND = 512  # scanlines unfiltered together: bounds the skewed work arrays of _unfilter_band


def _unfilter_simple(kind: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Undo scanline filter 0 (none), 1 (sub) or 2 (up): whole-row numpy operations."""
    if kind == 0:
        return line.copy()
    if kind == 1:
        return np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).ravel()
    return line + prev


def _unfilter_band(band: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Undo the PNG filters (0-4) of consecutive scanlines, one anti-diagonal of pixels at a time.

    A byte depends on its left, upper and upper-left neighbours, so every pixel on an
    anti-diagonal (row + column constant) can be decoded at once from the two before it. The rows
    are skewed (row i shifted right by i + 1 pixels) to make each anti-diagonal a plain column.
    """
    height, width = len(band), (band.shape[1] - 1) // bpp
    lines = band[:, 1:].reshape(height, width, bpp)
    kinds = band[:, 0][:, None]  # per row, broadcast over the bytes of its pixel
    present = set(np.unique(kinds).tolist())
    skewed_in = np.zeros((height + 1, height + width + 1, bpp), np.int16)
    done = np.zeros_like(skewed_in)  # row 0: the scanline above the band; column 0: left of pixel 0
    done[0, 1 : width + 1] = prev.reshape(width, bpp)
    for i in range(1, height + 1):
        skewed_in[i, i + 1 : i + 1 + width] = lines[i - 1]
    for col in range(2, height + width + 1):
        top, bottom = max(1, col - width), min(height, col - 1)  # rows with a pixel on this diagonal
        a, b, c = done[top : bottom + 1, col - 1], done[top - 1 : bottom, col - 1], done[top - 1 : bottom, col - 2]
        kind = kinds[top - 1 : bottom]
        if 4 in present:
            pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
            pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        else:
            pred = np.zeros_like(a)
        if 3 in present:
            pred = np.where(kind == 3, (a + b) >> 1, pred)
        if 2 in present:
            pred = np.where(kind == 2, b, pred)
        if 1 in present:
            pred = np.where(kind == 1, a, pred)
        if 0 in present and 4 in present:  # without Paeth, rows of kind 0 already predict 0
            pred = np.where(kind == 0, 0, pred)
        done[top : bottom + 1, col] = (skewed_in[top : bottom + 1, col] + pred) & 0xFF
    return np.stack([done[i, i + 1 : i + 1 + width] for i in range(1, height + 1)]).astype(np.uint8).reshape(height, -1)
