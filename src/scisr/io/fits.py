"""FITS reader: the first image HDU with >= 2-D data, one float32 frame per plane.

Conventions:
- BSCALE/BZERO are applied by astropy; integer BLANK pixels become NaN.
- Refused (ReadError): BITPIX not a FITS pixel type, a data section declaring more than
  `max_bytes` (checked before astropy allocates it), a gzip stream inflating past it, and a
  truncated data section (astropy only warns and pads with zeros).
- NaN and +-inf are kept as NaN (downstream normalization ignores NaN); a plane with no
  finite pixel is left for the caller to reject.
- Cubes (and higher) give one frame per 2-D plane, in file order (the last two axes are y, x).
- `original_dtype` comes from BITPIX (ZBITPIX for tile-compressed HDUs, via astropy's header);
  BITPIX 16/32/64 with BZERO = 2**(n-1) and BSCALE 1 is reported as unsigned.
"""

from __future__ import annotations

import math
import os
import re
import warnings
import zlib
from pathlib import Path

import numpy as np
from astropy.io import fits

from scisr.io.frame import Frame, NotAnImageError, ReadError
from scisr.io.limits import DEFAULT_MAX_BYTES, check_declared, inflated_size, reader_edge
from scisr.io.sky import sky_footprint

_BITPIX = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32", -64: "float64"}
# astropy pads a short data section with zeros and only warns; SciSR refuses it.
_FATAL_WARNING = "File may have been truncated"
_MAX_HEADER_BLOCKS = 1000  # 2880-byte blocks: 36,000 cards, far more than any real header
_MAX_HDUS = 10_000
_NAXIS_KEY = re.compile(rb"Z?NAXIS\d{0,3}")
_SUFFIXES = (".gz", ".fz", ".bz2", ".fits", ".fit", ".fts")


def read_fits(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Frame]:
    """Read the first >= 2-D image HDU of a FITS file (plain, .gz or tile-compressed)."""
    path = Path(path)
    with reader_edge(path, "not a readable FITS file"):
        _check_before_open(path, max_bytes)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fits.open(path, memmap=False) as hdul:
                hdu = _first_image(hdul, path)
                if hdu is None:
                    kinds = ", ".join(f"{type(h).__name__.removesuffix('HDU')} {h.name}" for h in hdul)
                    raise NotAnImageError(f"{path.name}: no image HDU with 2-D (or more) data (it holds {kinds})")
                header = hdu.header.copy()  # before .data: astropy rewrites BITPIX/BZERO on scaling
                _check_header(path, header, hdu.name, max_bytes)
                data = np.asarray(hdu.data)
                if data.ndim < 2:
                    raise ReadError(f"{path.name}: HDU {hdu.name} has {data.ndim}-D data, need 2-D or more")
                quantized = _is_quantized(hdu)
                header_text = header.tostring(sep="\n")
        for w in caught:
            if _FATAL_WARNING in str(w.message):
                raise ReadError(f"{path.name}: {w.message}; the file is truncated, fetch it again")

    image = data.astype(np.float64)
    blank = header.get("BLANK")
    if blank is not None and data.dtype.kind in "iu":
        image[data == blank] = np.nan
    image[~np.isfinite(image)] = np.nan
    planes = image.reshape(-1, *image.shape[-2:])

    obj = str(header.get("OBJECT", "") or "").strip()
    subject, rule = (obj, "object") if obj else (_stem(path), "file")
    sky = sky_footprint(header, planes.shape[-2:])
    bitpix = int(header.get("BITPIX", 0))
    meta = {"format": "fits", "bitpix": bitpix, "hdu": hdu.name, "header": header_text}
    return [
        Frame(
            image=plane.astype(np.float32),
            frame=i,
            subject_id=subject,
            series_id=_stem(path),
            instance_id="",
            modality="FITS",
            original_dtype=_original_dtype(header),
            lossy=quantized,
            meta=meta,
            subject_rule=rule,
            sky=sky,
        )
        for i, plane in enumerate(planes)
    ]


def fits_planes(source: str | os.PathLike, hdu: str | None = None) -> tuple[int, list[np.ndarray]]:
    """(HDU index, 2-D float32 planes) for `scisr upscale`: `read_fits`'s image HDU, or the named/numbered one."""
    source = Path(source)
    if hdu is None:
        frames = read_fits(source)
        with fits.open(source) as hdul:
            index = next(
                i for i, h in enumerate(hdul) if h.name == frames[0].meta["hdu"] and int(h.header.get("NAXIS", 0)) >= 2
            )
        return index, [f.image for f in frames]
    _check_before_open(source, DEFAULT_MAX_BYTES)  # what read_fits checks before astropy parses a header
    try:
        with fits.open(source, memmap=False) as hdul:
            key = int(hdu) if hdu.isdigit() else hdu
            try:
                index = hdul.index_of(key)
            except (KeyError, IndexError):
                names = ", ".join(f"{i}:{h.name}" for i, h in enumerate(hdul))
                raise ReadError(f"{source.name}: no HDU {hdu!r}; it has {names}") from None
            item = hdul[index]
            if item.data is None or item.data.ndim < 2 or not item.is_image:
                raise ReadError(f"{source.name}: HDU {hdu!r} holds no 2-D (or more) image")
            data = np.asarray(item.data)
            blank = item.header.get("BLANK")
            image = data.astype(np.float64)
            if blank is not None and data.dtype.kind in "iu":
                image[data == blank] = np.nan
    except ReadError:
        raise
    except Exception as exc:
        raise ReadError(f"{source.name}: not a readable FITS file ({type(exc).__name__}: {exc})") from exc
    return index, [plane.astype(np.float32) for plane in image.reshape(-1, *image.shape[-2:])]


def _check_header(path: Path, header: fits.Header, name: str, max_bytes: int) -> None:
    """BITPIX must be a FITS pixel type; the declared data size must be within `max_bytes`."""
    bitpix = header.get("BITPIX")
    if bitpix not in _BITPIX:
        raise ReadError(f"{path.name}: HDU {name} has BITPIX {bitpix!r}, not one of {sorted(_BITPIX)}")
    axes = [int(header[f"NAXIS{i}"]) for i in range(1, int(header["NAXIS"]) + 1)]
    declared = abs(int(bitpix)) // 8 * math.prod(axes)
    check_declared(path, declared, max_bytes, f"HDU {name} ({' x '.join(map(str, axes))}, BITPIX {bitpix})")


def _check_before_open(path: Path, max_bytes: int) -> None:
    """Before astropy reads anything: a gzipped file must not inflate past the limit (plus header
    room), the primary header must end (END card) within `_MAX_HEADER_BLOCKS` blocks, since
    astropy scans any amount of data looking for it, and the NAXIS cards must be sane (`_check_naxis`)."""
    with open(path, "rb") as fh:
        data = fh.read()
    head = data[: _MAX_HEADER_BLOCKS * 2880]
    if data[:2] == b"\x1f\x8b":
        slack = 1 << 20
        try:
            size = inflated_size(data, 31, max_bytes + slack)
            head = zlib.decompressobj(31).decompress(data, _MAX_HEADER_BLOCKS * 2880)
        except zlib.error as exc:
            raise ReadError(f"{path.name}: gzip stream is corrupt ({exc})") from exc
        check_declared(path, size - slack, max_bytes, "the gzip stream")
    cards = (head[i : i + 80] for i in range(0, len(head) - 79, 80))
    if not any(card.rstrip() == b"END" for card in cards):
        raise ReadError(
            f"{path.name}: no END card in the first {_MAX_HEADER_BLOCKS} header blocks; not a FITS file or damaged"
        )
    _check_naxis(path, data if data[:2] != b"\x1f\x8b" else head)


def _check_naxis(path: Path, data: bytes) -> None:
    """Every NAXIS card (at a card boundary) must hold 0..999 and every NAXISn / ZNAXISn card a whole number, as
    FITS requires: astropy uses them before anything checks them, so NAXIS = 2147483647 would build a list for
    minutes, and NAXIS1 = 'RA---NCP' times NAXIS2 = 2147483647 a 17 GB string."""
    at = data.find(b"NAXIS")
    while at >= 0:
        start = at - 1 if at % 80 == 1 and data[at - 1 : at] == b"Z" else at
        key = data[start : start + 8].rstrip()
        if start % 80 == 0 and data[start + 8 : start + 10] == b"= " and _NAXIS_KEY.fullmatch(key):
            text = data[start + 10 : start + 80].split(b"/")[0].strip()
            bound = 999 if key == b"NAXIS" else None
            if not (text.isdigit() and (bound is None or int(text) <= bound)):
                value = text.decode("ascii", "replace")[:20]
                allowed = "0 to 999" if bound else "a whole number of pixels"
                raise ReadError(f"{path.name}: a header declares {key.decode()} = {value}; FITS allows {allowed}")
        at = data.find(b"NAXIS", at + 1)


def is_fits_lossy(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bool:
    """True when the first image HDU is a quantized (lossy) tile-compressed float image."""
    try:
        _check_before_open(Path(path), max_bytes)
        with fits.open(path, memmap=False) as hdul:
            hdu = _first_image(hdul, path)
            return hdu is not None and _is_quantized(hdu)
    except Exception:
        return False


def _is_quantized(hdu) -> bool:
    """True for a tile-compressed float image stored quantized (lossy), i.e. ZQUANTIZ != NONE."""
    if not isinstance(hdu, fits.CompImageHDU) or int(hdu.header.get("BITPIX", 0)) > 0:
        return False
    table = getattr(hdu, "_bintable", None)  # astropy hides the Z* keywords from .header
    zquantiz = str(table.header.get("ZQUANTIZ", "")) if table is not None else ""
    return zquantiz.strip().upper() != "NONE"


def _first_image(hdul: fits.HDUList, path: Path):
    """The first primary/image/compressed HDU whose header declares >= 2 non-empty axes.

    An HDU that declares a negative axis length is refused before astropy looks for the next HDU: its data
    size is negative, and astropy would find "the next HDU" at or before this one, forever.
    """
    for number, hdu in enumerate(hdul):
        if number >= _MAX_HDUS:
            raise ReadError(f"{path.name}: more than {_MAX_HDUS:,} HDUs")
        naxis = hdu.header.get("NAXIS", 0)
        lengths = [hdu.header.get(f"NAXIS{i}", 0) for i in range(1, naxis + 1)] if isinstance(naxis, int) else []
        if not isinstance(naxis, int) or naxis < 0 or any(not isinstance(n, int) or n < 0 for n in lengths):
            raise ReadError(f"{path.name}: HDU {number} declares axes NAXIS={naxis!r} {lengths}, not lengths")
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and naxis >= 2 and all(lengths):
            return hdu
    return None


def _original_dtype(header: fits.Header) -> str:
    bitpix = int(header.get("BITPIX", 0))
    name = _BITPIX.get(bitpix, f"BITPIX={bitpix}")
    if bitpix in (16, 32, 64) and header.get("BSCALE", 1) == 1 and header.get("BZERO", 0) == 2 ** (bitpix - 1):
        name = "u" + name
    return name


def _stem(path: Path) -> str:
    name = path.name
    while name.lower().endswith(_SUFFIXES):
        name = name[: name.rfind(".")]
    return name or path.name
