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

import io
import math
import os
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.uid as uids
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut

from scisr.io.codestream import Geometry, check_frames
from scisr.io.dicom_frames import frame_groups, frame_type, slice_position
from scisr.io.frame import Frame, NotAnImageError, ReadError, luma, native_dtype_name
from scisr.io.hashing import file_sha256
from scisr.io.limits import DEFAULT_MAX_BYTES, check_declared, inflated_size, reader_edge, stage

_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)
# pydicom parses an inflated run of zeros as millions of empty elements (minutes per 100 MB).
_MAX_DEFLATE_RATIO = 500
_HEADER_SLACK = 16 << 20  # room for non-pixel elements when comparing a file's size with the limit
# Image objects whose SOP class name does not end in "Image Storage".
_IMAGE_CLASSES_BY_NAME = {"Parametric Map Storage"}

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
    with reader_edge(path, "not a readable DICOM file"):
        return pydicom.dcmread(_in_memory(path, DEFAULT_MAX_BYTES), stop_before_pixels=True, force=force)


def _in_memory(path: Path, max_bytes: int) -> io.BytesIO:
    """The file's bytes as a buffer: pydicom then reads a damaged element length of 4 GB as the
    bytes that exist, instead of asking the OS for 4 GB first. Files far over the limit are refused."""
    size = path.stat().st_size
    check_declared(path, size - _HEADER_SLACK, max_bytes, f"a {size:,}-byte file")
    return io.BytesIO(path.read_bytes())


def is_lossy(ds: Dataset) -> bool:
    """True when the dataset's pixels went through lossy compression (header or transfer syntax)."""
    flag = str(ds.get("LossyImageCompression", "") or "").strip()
    if flag == "01":
        return True
    ts = _transfer_syntax(ds)
    return ts in _LOSSY or (ts in _MAYBE_LOSSY and flag != "00")


def is_dicom_lossy(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bool:
    """Header-only: True when the file's pixels went through lossy compression."""
    _check_deflated(Path(path), max_bytes)
    return is_lossy(read_header(path, force=True))


def read_dicom(path: str | os.PathLike, *, force: bool = False, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Frame]:
    """Read every frame of a DICOM file as float32 physical values (see module docstring)."""
    path = Path(path)
    with reader_edge(path, "not a readable DICOM file"):
        return _read(path, force, max_bytes)


def _read(path: Path, force: bool, max_bytes: int) -> list[Frame]:
    _check_deflated(path, max_bytes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(_in_memory(path, max_bytes), force=force)
        ds.filename = str(path)
    notes = [str(w.message).replace(str(path), path.name) for w in caught]
    _check_sop_class(ds, path)
    if not any(k in ds for k in PIXEL_KEYWORDS):
        hint = f" ({notes[0]})" if notes else ""
        raise ReadError(f"{path.name}: no pixel data{hint}; the file is truncated or not an image, fetch it again")
    geo = _geometry(ds, path)
    check_declared(
        path, _decoded_bytes(geo), max_bytes, f"{geo.rows}x{geo.cols}x{geo.frames} frame(s) x {geo.samples} sample(s)"
    )
    ts = _transfer_syntax(ds)
    if ts is not None and ts.is_encapsulated:
        try:
            check_frames(ds[next(k for k in PIXEL_KEYWORDS if k in ds)].value, ts, geo)
        except ValueError as exc:
            raise ReadError(f"{path.name}: {ts.name} pixel data does not match the header: {exc}") from exc
    else:
        _check_length(ds, path, geo)
    stored = _decode(ds, path)
    _check_values(ds, stored, path)

    n_frames = geo.frames
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    colour = geo.samples > 1 or photometric == "PALETTE COLOR"
    try:
        frames = stored.reshape((n_frames, *stored.shape[-3 if colour else -2 :]))
    except ValueError as exc:
        raise ReadError(f"{path.name}: decoded pixels {stored.shape} do not match NumberOfFrames {n_frames}") from exc
    subject, rule = _subject_id(ds, path)
    common = dict(
        subject_id=subject,
        subject_rule=rule,
        series_id=str(ds.get("SeriesInstanceUID", "") or "") or subject,
        instance_id=str(ds.get("SOPInstanceUID", "") or ""),
        modality=str(ds.get("Modality", "") or ""),
        original_dtype=native_dtype_name(stored.dtype),
        lossy=is_lossy(ds),
    )
    meta_common: dict[str, Any] = {
        "format": "dicom",
        "transfer_syntax": str(ts or ""),
        "photometric": photometric,
        "bits_stored": _int(ds, "BitsStored", 0),
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
            rescale = _rescale(ds, i, path)
            image = image * rescale[0] + rescale[1]
        meta = {**meta_common, "rescale": rescale}
        types, component = frame_type(ds, i)
        out.append(
            Frame(
                image=image.astype(np.float32),
                frame=i,
                meta=meta,
                image_type=types,
                complex_component=component,
                slice_position=slice_position(ds, i),
                **common,
            )
        )
    return out


def _check_sop_class(ds: Dataset, path: Path) -> None:
    """Raise NotAnImageError unless SOPClassUID is an image storage class (absent: allowed)."""
    value = str(ds.get("SOPClassUID", "") or "").strip()
    if not value:
        return
    uid = uids.UID(value)
    name = uid.name if uid.name != value else ""
    if not name.endswith("Image Storage") and name not in _IMAGE_CLASSES_BY_NAME:
        what = f"{name} ({value})" if name else f"unknown SOP class {value}"
        raise NotAnImageError(f"{path.name}: {what} is not an image storage SOP class; skipped")


def _check_deflated(path: Path, max_bytes: int) -> None:
    """Refuse a Deflated Explicit VR file whose dataset inflates past the limit (pydicom inflates it all)."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[128:132] != b"DICM" or uids.DeflatedExplicitVRLittleEndian.encode() not in data[132:4096]:
        return
    pos = 132
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":  # walk the explicit-VR meta group
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            pos += 12 + int.from_bytes(data[pos + 8 : pos + 12], "little")
        else:
            pos += 8 + int.from_bytes(data[pos + 6 : pos + 8], "little")
    slack = 1 << 20  # the non-pixel part of a dataset
    try:
        size = inflated_size(data[pos:], -15, max_bytes + slack)
    except zlib.error as exc:
        raise ReadError(f"{path.name}: deflated dataset is corrupt ({exc})") from exc
    check_declared(path, size - slack, max_bytes, "the deflated dataset")
    if size > _MAX_DEFLATE_RATIO * max(len(data) - pos, 1):
        raise ReadError(
            f"{path.name}: deflated dataset inflates {size // max(len(data) - pos, 1)}:1 "
            f"(over {_MAX_DEFLATE_RATIO}:1), a decompression bomb; refused"
        )


def _geometry(ds: Dataset, path: Path) -> Geometry:
    """Rows, Columns, frames, samples, BitsAllocated parsed strictly (ReadError naming a bad one)."""
    keyword = next(k for k in PIXEL_KEYWORDS if k in ds)
    default_bits = {"FloatPixelData": 32, "DoubleFloatPixelData": 64}.get(keyword)
    geo = Geometry(
        rows=_int(ds, "Rows", None),
        cols=_int(ds, "Columns", None),
        frames=_int(ds, "NumberOfFrames", 1),
        samples=_int(ds, "SamplesPerPixel", 1),
        bits_allocated=_int(ds, "BitsAllocated", default_bits),
    )
    stored = _int(ds, "BitsStored", geo.bits_allocated)
    problems = []
    if min(geo.rows, geo.cols, geo.frames) < 1:
        problems.append(f"Rows {geo.rows}, Columns {geo.cols}, NumberOfFrames {geo.frames} must be >= 1")
    if geo.samples not in (1, 3, 4):
        problems.append(f"SamplesPerPixel {geo.samples} is not 1 or 3")
    if geo.bits_allocated not in (1, 8, 16, 32, 64):
        problems.append(f"BitsAllocated {geo.bits_allocated} is not 1, 8, 16, 32 or 64")
    if not 1 <= stored <= geo.bits_allocated:
        problems.append(f"BitsStored {stored} is not within 1..BitsAllocated {geo.bits_allocated}")
    if _int(ds, "PixelRepresentation", 0) not in (0, 1):
        problems.append("PixelRepresentation is not 0 or 1")
    if problems:
        raise ReadError(f"{path.name}: invalid image header: {'; '.join(problems)}")
    return geo


def _decoded_bytes(geo: Geometry) -> int:
    return geo.rows * geo.cols * geo.frames * geo.samples * max(geo.bits_allocated // 8, 1)


def _decode(ds: Dataset, path: Path) -> np.ndarray:
    """Decode the pixel data to stored values (no rescale); decoder failures and warnings -> ReadError."""
    ts = _transfer_syntax(ds)
    name = ts.name if ts else "unknown transfer syntax"
    if ts in uids.RLETransferSyntaxes:
        # pydicom's own RLE decoder warns when a segment decodes to the wrong length (caught below as
        # an error) and cannot panic; pylibjpeg-rle does neither (its cost: bench/README.md, "Readers").
        ds.pixel_array_options(decoding_plugin="pydicom")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with stage(f"{name} decoding"):
                array = ds.pixel_array
        except (RuntimeError, NotImplementedError) as exc:
            text = " ".join(str(exc).split())
            package = _DECODER_PACKAGE.get(ts)
            if package and "missing dependencies" in text:
                raise ReadError(
                    f"{path.name}: {name} pixel data needs {package} (pip install pylibjpeg {package})"
                ) from exc
            raise ReadError(f"{path.name}: cannot decode {name} pixel data: {text}") from exc
        except _PASS_THROUGH:
            raise
        except BaseException as exc:  # decoders raise many kinds on corrupt streams, some not Exception
            if ts is None:
                raise ReadError(
                    f"{path.name}: no Transfer Syntax UID in the file meta; re-export it as a DICOM Part 10 file"
                ) from exc
            raise ReadError(f"{path.name}: cannot decode {name} pixel data ({type(exc).__name__}: {exc})") from exc
        if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
            array = apply_color_lut(array, ds)
    messages = [str(w.message) for w in caught if not issubclass(w.category, ResourceWarning)]
    if messages:
        raise ReadError(f"{path.name}: the {name} decoder warned: {'; '.join(messages)}")
    return np.asarray(array)


def _check_values(ds: Dataset, stored: np.ndarray, path: Path) -> None:
    """Integer stored values must lie in the range BitsStored and PixelRepresentation allow."""
    if stored.dtype.kind not in "iu" or stored.size == 0:
        return
    if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
        return  # values are the lookup table's output, not stored values
    lo, hi = _stored_range(ds)
    low, high = int(stored.min()), int(stored.max())
    if low < lo or high > hi:
        raise ReadError(
            f"{path.name}: decoded values {low}..{high} lie outside BitsStored {_int(ds, 'BitsStored', 0)}'s "
            f"range {lo}..{hi}; the compressed data is damaged"
        )


def _check_length(ds: Dataset, path: Path, geo: Geometry) -> None:
    """Native (uncompressed) pixel data must be exactly as long as the header says (one pad byte allowed)."""
    keyword = next(k for k in PIXEL_KEYWORDS if k in ds)
    pixels = geo.rows * geo.cols * geo.frames * geo.samples
    if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        pixels = pixels * 2 // 3  # two chroma samples shared by each pair of pixels
    bits = geo.bits_allocated
    expected = (pixels + 7) // 8 if bits == 1 else pixels * (bits // 8)
    actual = len(ds[keyword].value or b"")
    if actual < expected:
        raise ReadError(
            f"{path.name}: pixel data too short: {actual} of {expected} bytes "
            f"({geo.rows}x{geo.cols}x{geo.frames} frames); the file is truncated, fetch it again"
        )
    if actual > expected + expected % 2:
        raise ReadError(
            f"{path.name}: pixel data has {actual - expected} bytes more than Rows {geo.rows} x Columns {geo.cols} "
            f"x {geo.frames} frame(s) x {geo.samples} sample(s) x {bits} bits = {expected} bytes; "
            "a wrong Rows/Columns would shear the image, so it is refused"
        )


def _rescale(ds: Dataset, index: int, path: Path) -> tuple[float, float]:
    """(slope, intercept) for frame `index`: per-frame groups, then shared groups, then top level."""
    for group in frame_groups(ds, index):
        seq = group.get("PixelValueTransformationSequence")
        if seq and ("RescaleSlope" in seq[0] or "RescaleIntercept" in seq[0]):
            return _float(seq[0], "RescaleSlope", 1.0, path), _float(seq[0], "RescaleIntercept", 0.0, path)
    return _float(ds, "RescaleSlope", 1.0, path), _float(ds, "RescaleIntercept", 0.0, path)


def _stored_range(ds: Dataset) -> tuple[int, int]:
    """The (min, max) a stored value can take, from BitsStored and PixelRepresentation."""
    bits = _int(ds, "BitsStored", _int(ds, "BitsAllocated", 16))
    if _int(ds, "PixelRepresentation", 0) == 1:
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


def _subject_id(ds: Dataset, path: Path) -> tuple[str, str]:
    """(subject, rule): PatientID ("patient"), else StudyInstanceUID ("study"), else a hash of the file ("file")."""
    for keyword, rule in (("PatientID", "patient"), ("StudyInstanceUID", "study")):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            return value, rule
    return "file-" + file_sha256(path)[:16], "file"


def _transfer_syntax(ds: Dataset) -> uids.UID | None:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    return uids.UID(str(ts)) if ts else None


def _int(ds: Dataset, keyword: str, default: int | None) -> int:
    """An integer attribute; absent/empty -> default (ReadError when there is none); unparseable -> ReadError."""
    try:
        value = ds.get(keyword)
        if value in (None, ""):
            if default is None:
                raise ReadError(f"{keyword} is missing")
            return default
        return int(value)
    except ReadError as exc:
        raise ReadError(f"{_name(ds)}: invalid image header: {exc}") from exc
    except (TypeError, ValueError, OverflowError) as exc:
        raise ReadError(f"{_name(ds)}: {keyword} {_raw(ds, keyword)} is not an integer; fix the header") from exc


def _float(ds: Dataset, keyword: str, default: float, path: Path) -> float:
    """A finite decimal attribute; absent/empty -> default; unparseable or not finite -> ReadError."""
    try:
        value = ds.get(keyword)
        result = float(value) if value not in (None, "") else default
    except (TypeError, ValueError, OverflowError) as exc:
        raise ReadError(f"{path.name}: {keyword} {_raw(ds, keyword)} is not a number; fix the header") from exc
    if not math.isfinite(result):
        raise ReadError(f"{path.name}: {keyword} is {result}; fix the header")
    return result


def _raw(ds: Dataset, keyword: str) -> str:
    try:
        return repr(str(ds[keyword].value))[:40]
    except Exception:
        return "(unreadable)"


def _name(ds: Dataset) -> str:
    return Path(str(getattr(ds, "filename", "") or "file")).name
