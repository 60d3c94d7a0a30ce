"""DICOM reader: every frame in physical units (rescale applied), float32, no 8-bit step.

Conventions:
- Modality LUT: RescaleSlope/Intercept per frame for enhanced multi-frame objects
  (PerFrameFunctionalGroupsSequence[i].PixelValueTransformationSequence, then the shared
  functional groups, then the top level); computed in float64, stored as float32.
- MONOCHROME1 is inverted in the stored value range (min + max - x, range from BitsStored and
  PixelRepresentation) before rescaling, so high values are bright. Because the rescale is
  linear this equals inverting the rescaled values in the rescaled range.
- Colour (RGB; YBR, which pydicom converts to RGB; PALETTE COLOR through its lookup table)
  becomes BT.601 luma
  0.299 R + 0.587 G + 0.114 B computed in float on the stored values; no rescale (undefined
  for colour).
- A pixel-data element shorter than Rows x Columns x Frames x Samples x BitsAllocated is an
  error, never a silently padded image.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.uid as uids
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut

from scisr.io.frame import Frame, ReadError, luma, native_dtype_name
from scisr.io.hashing import file_sha256

PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# Transfer syntaxes whose encoding always loses information.
_LOSSY = {
    uids.JPEGBaseline8Bit,
    uids.JPEGExtended12Bit,
    uids.JPEGLSNearLossless,
    *uids.MPEGTransferSyntaxes,
}
# Transfer syntaxes that may be lossy or lossless: trust LossyImageCompression when present.
_MAYBE_LOSSY = {uids.JPEG2000, uids.JPEG2000MC, uids.HTJ2K}

# Which package decodes which compressed transfer syntax (for error messages).
_DECODER_PACKAGE = {
    **{ts: "pylibjpeg-libjpeg" for ts in uids.JPEGTransferSyntaxes},
    **{ts: "pylibjpeg-libjpeg" for ts in uids.JPEGLSTransferSyntaxes},
    **{ts: "pylibjpeg-openjpeg" for ts in uids.JPEG2000TransferSyntaxes},
    **{ts: "pylibjpeg-openjpeg" for ts in (uids.HTJ2K, uids.HTJ2KLossless, uids.HTJ2KLosslessRPCL)},
    **{ts: "pylibjpeg-rle" for ts in uids.RLETransferSyntaxes},
}

# DICOM code 121320 "Uncompressed predecessor" and 113040 "Lossy Compression" (DCM scheme).
_PREDECESSOR_CODE = "121320"
_LOSSY_COMPRESSION_CODE = "113040"


def read_header(path: str | os.PathLike, *, force: bool = False) -> Dataset:
    """Read a DICOM header without pixel data; raise ReadError when it is not DICOM."""
    path = Path(path)
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=force)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        raise ReadError(f"{path.name}: not a readable DICOM file ({exc})") from exc


def is_lossy(ds: Dataset) -> bool:
    """True when the dataset's pixels went through lossy compression (header or transfer syntax)."""
    flag = str(ds.get("LossyImageCompression", "") or "").strip()
    if flag == "01":
        return True
    ts = _transfer_syntax(ds)
    return ts in _LOSSY or (ts in _MAYBE_LOSSY and flag != "00")


def is_dicom_lossy(path: str | os.PathLike) -> bool:
    """Header-only: True when the file's pixels went through lossy compression."""
    return is_lossy(read_header(path, force=True))


def read_dicom(path: str | os.PathLike, *, force: bool = False) -> list[Frame]:
    """Read every frame of a DICOM file as float32 physical values (see module docstring)."""
    path = Path(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path, force=force)
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError) as exc:
            raise ReadError(f"{path.name}: not a readable DICOM file ({exc})") from exc
    notes = [str(w.message).replace(str(path), path.name) for w in caught]
    if not any(k in ds for k in PIXEL_KEYWORDS):
        hint = f" ({notes[0]})" if notes else ""
        raise ReadError(f"{path.name}: no pixel data{hint}; the file is truncated or not an image, fetch it again")
    _check_length(ds, path)
    stored, decode_notes = _decode(ds, path)
    notes += decode_notes

    n_frames = _int(ds.get("NumberOfFrames"), 1)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    colour = _int(ds.get("SamplesPerPixel"), 1) > 1 or photometric == "PALETTE COLOR"
    try:
        frames = stored.reshape((n_frames, *stored.shape[-3 if colour else -2 :]))
    except ValueError as exc:
        raise ReadError(f"{path.name}: decoded pixels {stored.shape} do not match NumberOfFrames {n_frames}") from exc
    subject = _subject_id(ds, path)
    common = dict(
        subject_id=subject,
        series_id=str(ds.get("SeriesInstanceUID", "") or "") or subject,
        instance_id=str(ds.get("SOPInstanceUID", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        original_dtype=native_dtype_name(stored.dtype),
        lossy=is_lossy(ds),
    )
    meta_common: dict[str, Any] = {
        "format": "dicom",
        "transfer_syntax": str(_transfer_syntax(ds) or ""),
        "photometric": photometric,
        "bits_stored": _int(ds.get("BitsStored"), 0),
        "predecessors": _predecessors(ds),
        "warnings": notes,
    }
    out = []
    for i, plane in enumerate(frames):
        if colour:
            image = luma(plane[..., :3])
            rescale = (1.0, 0.0)
        else:
            image = plane.astype(np.float64)
            if photometric == "MONOCHROME1" and stored.dtype.kind in "iu":
                lo, hi = _stored_range(ds)
                image = (lo + hi) - image
            rescale = _rescale(ds, i)
            image = image * rescale[0] + rescale[1]
        meta = {**meta_common, "rescale": rescale}
        out.append(Frame(image=image.astype(np.float32), frame=i, meta=meta, **common))
    return out


def _decode(ds: Dataset, path: Path) -> tuple[np.ndarray, list[str]]:
    """Decode the pixel data to stored values (no rescale); map decoder failures to ReadError."""
    ts = _transfer_syntax(ds)
    name = ts.name if ts else "unknown transfer syntax"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            array = ds.pixel_array
        except (RuntimeError, NotImplementedError) as exc:
            text = " ".join(str(exc).split())
            package = _DECODER_PACKAGE.get(ts)
            if package and "missing dependencies" in text:
                raise ReadError(
                    f"{path.name}: {name} pixel data needs {package} (pip install pylibjpeg {package})"
                ) from exc
            raise ReadError(f"{path.name}: cannot decode {name} pixel data: {text}") from exc
        except Exception as exc:  # decoders raise many kinds on corrupt streams
            if ts is None:
                raise ReadError(
                    f"{path.name}: no Transfer Syntax UID in the file meta; re-export it as a DICOM Part 10 file"
                ) from exc
            raise ReadError(f"{path.name}: cannot decode {name} pixel data ({type(exc).__name__}: {exc})") from exc
        if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
            array = apply_color_lut(array, ds)
    return np.asarray(array), [str(w.message) for w in caught]


def _check_length(ds: Dataset, path: Path) -> None:
    """Raise ReadError when native (uncompressed) pixel data is shorter than the header says."""
    ts = _transfer_syntax(ds)
    if ts is not None and ts.is_encapsulated:
        return
    keyword = next(k for k in PIXEL_KEYWORDS if k in ds)
    rows, cols = _int(ds.get("Rows"), 0), _int(ds.get("Columns"), 0)
    frames, samples = _int(ds.get("NumberOfFrames"), 1), _int(ds.get("SamplesPerPixel"), 1)
    bits = _int(ds.get("BitsAllocated"), 8)
    pixels = rows * cols * frames * samples
    if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        pixels = pixels * 2 // 3  # two chroma samples shared by each pair of pixels
    expected = (pixels + 7) // 8 if bits == 1 else pixels * (bits // 8)
    actual = len(ds[keyword].value or b"")
    if actual < expected:
        raise ReadError(
            f"{path.name}: pixel data too short: {actual} of {expected} bytes "
            f"({rows}x{cols}x{frames} frames); the file is truncated, fetch it again"
        )


def _rescale(ds: Dataset, index: int) -> tuple[float, float]:
    """(slope, intercept) for frame `index`: per-frame groups, then shared groups, then top level."""
    groups = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and index < len(per_frame):
        groups.append(per_frame[index])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for group in groups:
        seq = group.get("PixelValueTransformationSequence")
        if seq and ("RescaleSlope" in seq[0] or "RescaleIntercept" in seq[0]):
            return _float(seq[0].get("RescaleSlope"), 1.0), _float(seq[0].get("RescaleIntercept"), 0.0)
    return _float(ds.get("RescaleSlope"), 1.0), _float(ds.get("RescaleIntercept"), 0.0)


def _stored_range(ds: Dataset) -> tuple[int, int]:
    """The (min, max) a stored value can take, from BitsStored and PixelRepresentation."""
    bits = _int(ds.get("BitsStored"), _int(ds.get("BitsAllocated"), 16))
    if _int(ds.get("PixelRepresentation"), 0) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _predecessors(ds: Dataset) -> list[str]:
    """SOP Instance UIDs this image is a (re-)compressed copy of, from SourceImageSequence."""
    sources = ds.get("SourceImageSequence") or []
    derivation = {str(c.get("CodeValue", "")) for c in ds.get("DerivationCodeSequence") or []}
    out = []
    for item in sources:
        purposes = {str(c.get("CodeValue", "")) for c in item.get("PurposeOfReferenceCodeSequence") or []}
        uid = str(item.get("ReferencedSOPInstanceUID", "") or "")
        if uid and (_PREDECESSOR_CODE in purposes or _LOSSY_COMPRESSION_CODE in derivation):
            out.append(uid)
    return out


def _subject_id(ds: Dataset, path: Path) -> str:
    """PatientID, else StudyInstanceUID, else a hash of the file's bytes."""
    for keyword in ("PatientID", "StudyInstanceUID"):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            return value
    return "file-" + file_sha256(path)[:16]


def _transfer_syntax(ds: Dataset) -> uids.UID | None:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return uids.UID(str(ts)) if ts else None


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _float(value: Any, default: float) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default
