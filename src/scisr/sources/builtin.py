"""Offline image sets that ship inside installed Python packages (no network, ever).

Sets (``{"kind": "builtin", "set": NAME}``):
- ``mri``: the Modality MR DICOMs at the top level of pydicom's ``data/test_files`` and in
  the ``pydicom-data`` package (module ``data_store``, folder ``data_store/data``), selected by
  reading headers. Broken files (MR_truncated, emri_small_jpeg_2k_lossless_too_short) are kept:
  extraction records them as skipped. pydicom's ``dicomdirtests`` subfolder (16x16 DICOMDIR
  test images) is not part of the set.
- ``astro``: scikit-image's Hubble Deep Field and Moon, plus astropy's bundled real sky images
  (M13, NGC 1316, a DSS cut-out) when present in the installed astropy.
- ``generic``: scikit-image natural photographs; the stereo pair motorcycle_left/right gets
  the one subject 'motorcycle' so it never crosses splits.
Packages are located with importlib (never pydicom.data.get_testdata_files, which goes online).
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

from scisr.sources.manifest import Entry, copy_into

log = logging.getLogger("scisr.sources")

# (distribution name, importable module, folder inside the module)
PYDICOM = ("pydicom", "pydicom", "data/test_files")
PYDICOM_DATA = ("pydicom-data", "data_store", "data")
SKIMAGE = ("scikit-image", "skimage", "data")
ASTROPY = ("astropy", "astropy", "")

ASTRO_SKIMAGE = ["hubble_deep_field.jpg", "moon.png"]
ASTRO_ASTROPY = [
    "io/fits/hdu/compressed/tests/data/m13.fits",  # globular cluster M13, 300x300
    "io/fits/tests/data/comp.fits",  # NGC 1316, 300x440, tile-compressed
    "wcs/tests/data/dss.14.29.56-62.41.05.fits.gz",  # DSS cut-out, 100x100
]
GENERIC = {
    "astronaut.png": "",
    "camera.png": "",
    "coffee.png": "",
    "chelsea.png": "",
    "rocket.jpg": "",
    "brick.png": "",
    "grass.png": "",
    "gravel.png": "",
    "coins.png": "",
    "clock_motion.png": "",
    "motorcycle_left.png": "motorcycle",
    "motorcycle_right.png": "motorcycle",
}

# A candidate file: (path on disk, origin label for the manifest, subject hint)
Candidate = tuple[Path, str, str]


def package_dir(package: tuple[str, str, str]) -> Path | None:
    """The data folder of an installed package, found without importing it; None if absent."""
    _, module, sub = package
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / sub
    return folder if folder.is_dir() else None


def _label(package: tuple[str, str, str], rel: str) -> str:
    return f"builtin:{package[0]}/{rel}"


def mri_candidates() -> list[Candidate]:
    """Modality MR DICOMs shipped by pydicom and pydicom-data (headers read, pixels not)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    out = []
    for package in (PYDICOM, PYDICOM_DATA):
        folder = package_dir(package)
        if folder is None:
            log.warning("builtin mri: package %s is not installed; its DICOMs are left out", package[0])
            continue
        for path in sorted(p for p in folder.iterdir() if p.is_file()):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # odd test files complain about their VRs
                    modality = pydicom.dcmread(path, stop_before_pixels=True).get("Modality")
            except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
                continue  # not DICOM (README, json, gz, ...)
            if modality == "MR":
                out.append((path, _label(package, path.name), ""))
    return out


def astro_candidates() -> list[Candidate]:
    """scikit-image's Hubble and Moon images and astropy's bundled real sky FITS files."""
    wanted = [(SKIMAGE, name) for name in ASTRO_SKIMAGE] + [(ASTROPY, rel) for rel in ASTRO_ASTROPY]
    return _existing("astro", wanted, {})


def generic_candidates() -> list[Candidate]:
    """scikit-image's natural photographs (the motorcycle stereo pair as one subject)."""
    return _existing("generic", [(SKIMAGE, name) for name in GENERIC], GENERIC)


def _existing(
    set_name: str, wanted: list[tuple[tuple[str, str, str], str]], subjects: dict[str, str]
) -> list[Candidate]:
    """The wanted files that exist; log (not raise) each one that is absent."""
    out, absent = [], []
    for package, rel in wanted:
        folder = package_dir(package)
        path = folder / rel if folder is not None else None
        if path is None or not path.is_file():
            absent.append(_label(package, rel))
            continue
        out.append((path, _label(package, rel), subjects.get(rel, "")))
    if absent:
        log.warning(
            "builtin %s: %d optional file(s) absent from the installed packages: %s",
            set_name,
            len(absent),
            ", ".join(absent),
        )
    return out


SETS: dict[str, Callable[[], list[Candidate]]] = {
    "mri": mri_candidates,
    "astro": astro_candidates,
    "generic": generic_candidates,
}


def fetch_builtin(source: dict, dest: Path, cache: Path | None = None) -> list[Entry]:
    """Copy a builtin set's files flat into `dest`; a clash of names gets the package as prefix."""
    name = source.get("set")
    if name not in SETS:
        raise ValueError(f"builtin source: unknown set {name!r}; known sets: {', '.join(SETS)}")
    candidates = SETS[name]()
    if not candidates:
        raise ValueError(
            f"builtin set {name!r}: none of its files is installed; "
            "install pydicom, pydicom-data, scikit-image, astropy"
        )
    entries, taken = [], set()
    for path, label, subject in candidates:
        rel = path.name
        if rel in taken:
            rel = f"{label.split(':')[1].split('/')[0]}_{rel}"
        taken.add(rel)
        copy_into(path, dest, rel)
        entries.append(Entry(path=rel, source=label, subject=subject))
    return entries
