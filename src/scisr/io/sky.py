"""Where on the sky a FITS image lies: its footprint's centre and radius (ICRS degrees).

- With a celestial WCS (any projection astropy understands, any celestial frame, converted to
  ICRS): the centre is the world position of the central pixel, the radius the largest angular
  distance from it to the outer corners of the corner pixels, so the circle holds the whole
  footprint (two footprints that overlap always have overlapping circles; the converse is
  conservative, it may join neighbours that only nearly touch).
- Without one, a pointing from RA/DEC (or OBJCTRA/OBJCTDEC) keywords: degrees when numeric,
  hours and degrees when sexagesimal text; radius 0.
- None when the header says neither, or says it in a way astropy cannot parse.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from astropy.io import fits

_POINTING_KEYS = (("RA", "DEC"), ("OBJCTRA", "OBJCTDEC"), ("RA_OBJ", "DEC_OBJ"))


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

    wcs = WCS(header)
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
