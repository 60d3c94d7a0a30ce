"""Where on the sky a FITS image lies: its footprint's centre and radius (ICRS degrees).

- With a celestial WCS (any projection astropy understands, any celestial frame, converted to
  ICRS): the centre is the world position of the central pixel, the radius the largest angular
  distance from it to the outer corners of the corner pixels, so the circle holds the whole
  footprint (two footprints that overlap always have overlapping circles; the converse is
  conservative, it may join neighbours that only nearly touch).
- Without one, a pointing from RA/DEC (or OBJCTRA/OBJCTDEC) keywords: degrees when numeric,
  hours and degrees when sexagesimal text; radius 0.
- None when the header says neither, or says it in a way astropy cannot parse.

A DSS plate solution (PLTRAH..., AMDX1...) whose numeric keywords are not all finite numbers, or
that has an AMDXn/AMDYn beyond n = 20, is dropped before wcslib sees it: wcslib's DSS translation
crashes the process on either (a header with AMDY1 = 'FK4' beside a valid TAN solution, or a DSS
solution with AMDY70, is enough; astropy 7 / wcslib 8). Every read runs in the reader worker anyway
(`scisr.io.isolated`); this keeps such files readable, with the footprint of their other keywords.
"""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
from astropy.io import fits

from scisr.io.limits import stage

_POINTING_KEYS = (("RA", "DEC"), ("OBJCTRA", "OBJCTDEC"), ("RA_OBJ", "DEC_OBJ"))
_DSS_NUMERIC = (
    "PLTRAH",
    "PLTRAM",
    "PLTRAS",
    "PLTDECD",
    "PLTDECM",
    "PLTDECS",
    "PLTSCALE",
    "XPIXELSZ",
    "YPIXELSZ",
    "CNPIX1",
    "CNPIX2",
    *(f"PPO{i}" for i in range(1, 7)),
    *(f"AMDX{i}" for i in range(1, 21)),
    *(f"AMDY{i}" for i in range(1, 21)),
)


def sky_footprint(header: fits.Header, shape: tuple[int, int]) -> tuple[float, float, float] | None:
    """(RA, Dec, radius) in degrees of an image of `shape` (rows, cols) with `header` (module doc)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FITSFixedWarning and friends: non-standard but usable headers
        try:
            return _from_wcs(header, shape) or _from_pointing(header)
        except Exception:  # a malformed WCS must not make a readable image unreadable
            return None


def _from_wcs(header: fits.Header, shape: tuple[int, int]) -> tuple[float, float, float] | None:
    from astropy.wcs import WCS
    from astropy.wcs.utils import pixel_to_skycoord

    with stage("WCS parsing"):
        wcs = WCS(_without_bad_dss(header))
    if not wcs.has_celestial:
        return None
    celestial = wcs.celestial
    rows, cols = shape
    xs = np.array([(cols - 1) / 2, -0.5, cols - 0.5, -0.5, cols - 0.5])
    ys = np.array([(rows - 1) / 2, -0.5, -0.5, rows - 0.5, rows - 0.5])
    coords = pixel_to_skycoord(xs, ys, celestial).icrs
    ra, dec = coords.ra.deg, coords.dec.deg
    if not (np.isfinite(ra).all() and np.isfinite(dec).all()):
        return None
    radius = float(coords[0].separation(coords[1:]).deg.max())
    return float(ra[0]), float(dec[0]), radius


def _without_bad_dss(header: fits.Header) -> fits.Header:
    """`header`, or a copy without its DSS plate keywords when one of them is not a finite number."""

    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    present = [key for key in _DSS_NUMERIC if key in header]
    beyond = [key for key in header if re.fullmatch(r"AMD[XY]\d+", key) and key not in _DSS_NUMERIC]
    if not beyond and all(number(header[key]) for key in present) and isinstance(header.get("PLTDECSN", "+"), str):
        return header
    header = header.copy()
    for key in (*present, *beyond, "PLTDECSN"):
        header.remove(key, ignore_missing=True, remove_all=True)
    return header


def _from_pointing(header: fits.Header) -> tuple[float, float, float] | None:
    for ra_key, dec_key in _POINTING_KEYS:
        ra, dec = header.get(ra_key), header.get(dec_key)
        if ra is None or dec is None:
            continue
        if isinstance(ra, (int, float)) and isinstance(dec, (int, float)):
            if math.isfinite(ra) and math.isfinite(dec) and -90 <= dec <= 90:
                return float(ra) % 360.0, float(dec), 0.0
            continue
        from astropy import units as u
        from astropy.coordinates import SkyCoord

        coord = SkyCoord(str(ra), str(dec), unit=(u.hourangle, u.deg))
        return float(coord.ra.deg), float(coord.dec.deg), 0.0
    return None
