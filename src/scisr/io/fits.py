"""FITS reader: the first image HDU with >= 2-D data, one float32 frame per plane.

Conventions:
- BSCALE/BZERO are applied by astropy; integer BLANK pixels become NaN.
- NaN and +-inf are kept as NaN (downstream normalization ignores NaN); a plane with no
  finite pixel is left for the caller to reject.
- Cubes (and higher) give one frame per 2-D plane, in file order (the last two axes are y, x).
- `original_dtype` comes from BITPIX (ZBITPIX for tile-compressed HDUs, via astropy's header);
  BITPIX 16/32/64 with BZERO = 2**(n-1) and BSCALE 1 is reported as unsigned.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from scisr.io.frame import Frame, ReadError

_BITPIX = {8: "uint8", 16: "int16", 32: "int32", 64: "int64", -32: "float32", -64: "float64"}
_SUFFIXES = (".gz", ".fz", ".bz2", ".fits", ".fit", ".fts")


def read_fits(path: str | os.PathLike) -> list[Frame]:
    """Read the first >= 2-D image HDU of a FITS file (plain, .gz or tile-compressed)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            with fits.open(path, memmap=False) as hdul:
                hdu = _first_image(hdul)
                if hdu is None:
                    raise ReadError(f"{path.name}: no image HDU with 2-D (or more) data")
                header = hdu.header.copy()  # before .data: astropy rewrites BITPIX/BZERO on scaling
                data = np.asarray(hdu.data)
                if data.ndim < 2:
                    raise ReadError(f"{path.name}: HDU {hdu.name} has {data.ndim}-D data, need 2-D or more")
                quantized = _is_quantized(hdu)
                header_text = header.tostring(sep="\n")
    except ReadError:
        raise
    except Exception as exc:  # astropy raises OSError, ValueError, TypeError on bad files
        raise ReadError(f"{path.name}: not a readable FITS file ({type(exc).__name__}: {exc})") from exc

    image = data.astype(np.float64)
    blank = header.get("BLANK")
    if blank is not None and data.dtype.kind in "iu":
        image[data == blank] = np.nan
    image[~np.isfinite(image)] = np.nan
    planes = image.reshape(-1, *image.shape[-2:])

    subject = str(header.get("OBJECT", "") or "").strip() or _stem(path)
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
        )
        for i, plane in enumerate(planes)
    ]


def is_fits_lossy(path: str | os.PathLike) -> bool:
    """True when the first image HDU is a quantized (lossy) tile-compressed float image."""
    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = _first_image(hdul)
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


def _first_image(hdul: fits.HDUList):
    """The first primary/image/compressed HDU whose header declares >= 2 non-empty axes."""
    for hdu in hdul:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
            naxis = int(hdu.header.get("NAXIS", 0))
            if naxis >= 2 and all(int(hdu.header.get(f"NAXIS{i}", 0)) > 0 for i in range(1, naxis + 1)):
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
