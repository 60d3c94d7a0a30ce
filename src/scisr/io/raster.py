"""Raster reader (PNG, JPEG, TIFF, GIF, BMP, WebP, ...): grey float32 in the file's own units.

Conventions:
- Colour becomes BT.601 luma 0.299 R + 0.587 G + 0.114 B, computed in float on the original
  bit depth (0..255 stays 0..255, 0..65535 stays 0..65535); alpha is dropped; palette images
  are expanded to RGB first. Grey images keep their values exactly.
- TIFF is read with tifffile (any dtype, every full-resolution page is a frame; reduced
  pyramid/thumbnail pages are skipped). GIF and other animated formats give their first frame.
- 16-bit colour PNGs are decoded here because Pillow reduces them to 8 bits.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from scisr.io.frame import Frame, ReadError, luma, native_dtype_name

_LOSSY_FORMATS = {"JPEG", "MPO", "WEBP"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def read_raster(path: str | os.PathLike) -> list[Frame]:
    """Read a raster image file as grey float32 frames (see module docstring)."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(32)
    if head.startswith(_TIFF_SIGNATURES):
        arrays, fmt, lossy = _read_tiff(path), "TIFF", False
    elif head.startswith(_PNG_SIGNATURE) and len(head) > 25 and head[24] == 16 and head[25] in (2, 6):
        arrays, fmt, lossy = [_read_png16_colour(path)], "PNG", False
    else:
        array, colour, fmt = _read_pillow(path)
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


def _read_pillow(path: Path) -> tuple[np.ndarray, bool, str]:
    """First frame via Pillow as (array, is_colour, format); colour arrays are (..., 3 or 4)."""
    try:
        with Image.open(path) as im:
            im.seek(0)
            fmt, mode = im.format or path.suffix.lstrip(".").upper(), im.mode
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


def _read_tiff(path: Path) -> list[tuple[np.ndarray, bool]]:
    """Every full-resolution TIFF page as (array, is_colour)."""
    try:
        with tifffile.TiffFile(path) as tif:
            out = []
            for page in tif.pages:
                if getattr(page, "is_reduced", False):
                    continue
                out.append(_tiff_page(page))
            return out
    except ReadError:
        raise
    except Exception as exc:
        hint = "; compressed TIFFs may need imagecodecs (pip install imagecodecs)" if "imagecodecs" in str(exc) else ""
        raise ReadError(f"{path.name}: cannot read TIFF ({type(exc).__name__}: {exc}){hint}") from exc


def _tiff_page(page: tifffile.TiffPage) -> tuple[np.ndarray, bool]:
    array = page.asarray()
    photometric = page.photometric
    samples = page.samplesperpixel
    if samples > 1 and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
        array = np.moveaxis(array, -3, -1)
    if photometric == tifffile.PHOTOMETRIC.PALETTE:
        colormap = np.asarray(page.colormap)  # (3, 2**bits), 16-bit
        return colormap[:, array].transpose(1, 2, 0), True
    if photometric == tifffile.PHOTOMETRIC.RGB and samples >= 3:
        return array, True
    if samples > 1:
        array = array[..., 0]  # grey + extra samples (alpha)
    if photometric == tifffile.PHOTOMETRIC.MINISWHITE and array.dtype.kind == "u":
        array = np.iinfo(array.dtype).max - array
    if array.ndim != 2:
        raise ReadError(f"TIFF page {page.index}: unsupported shape {array.shape} ({photometric.name})")
    return array, False


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
    channels = 3 if colour == 2 else 4
    bpp, stride = 2 * channels, width * 2 * channels
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    except zlib.error as exc:
        raise ReadError(f"{path.name}: PNG image data is corrupt ({exc})") from exc
    if raw.size < height * (stride + 1):
        raise ReadError(f"{path.name}: PNG image data too short: {raw.size} of {height * (stride + 1)} bytes")
    rows = raw[: height * (stride + 1)].reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        out[y] = prev = _unfilter(int(rows[y, 0]), rows[y, 1:], prev, bpp, path)
    return out.view(">u2").reshape(height, width, channels), True


def _unfilter(kind: int, line: np.ndarray, prev: np.ndarray, bpp: int, path: Path) -> np.ndarray:
    """Undo one PNG scanline filter (0 none, 1 sub, 2 up, 3 average, 4 Paeth)."""
    if kind == 0:
        return line.copy()
    if kind == 1:
        return np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).ravel()
    if kind == 2:
        return line + prev
    if kind not in (3, 4):
        raise ReadError(f"{path.name}: unknown PNG filter type {kind}; the file is damaged")
    cur, up = bytearray(line.tobytes()), prev.tobytes()
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 3:
            pred = (a + b) >> 1
        else:
            c = up[i - bpp] if i >= bpp else 0
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[i] = (cur[i] + pred) & 0xFF
    return np.frombuffer(bytes(cur), np.uint8)
