"""Checks of DICOM compressed pixel data against the header, before any decoder runs.

A decoder allocates what the codestream says, not what the DICOM header says, and decodes a
damaged stream without complaint more often than not. So for every frame this module reads
the codestream's own header and end marker and refuses the file when they disagree with
Rows, Columns, SamplesPerPixel and BitsAllocated, or when the stream is cut short:
- JPEG (10918-1 baseline/extended/lossless) and JPEG-LS: SOI first, a SOF/SOF55 frame header
  with the same width, height and component count, precision <= BitsAllocated, EOI last; a
  frame header with 0 lines (height deferred to a DNL marker) is refused, since libjpeg's
  JPEG-LS decoder loops on it;
- JPEG 2000 and HTJ2K: SOC + SIZ (raw codestream, or inside a JP2 wrapper) with the same image
  size and component count, component depth <= BitsAllocated, EOC last;
- RLE: 64-byte header with one segment per sample per byte, first offset 64, offsets
  increasing and inside the frame.
Damage inside the entropy-coded data is not visible here; see the decoded-value checks.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

import pydicom.uid as uids
from pydicom.encaps import generate_frames

_JPEG = set(uids.JPEGTransferSyntaxes) | set(uids.JPEGLSTransferSyntaxes)
_J2K = set(uids.JPEG2000TransferSyntaxes) | {uids.HTJ2K, uids.HTJ2KLossless, uids.HTJ2KLosslessRPCL}
_RLE = set(uids.RLETransferSyntaxes)
# SOF markers: C0-C3, C5-C7, C9-CB, CD-CF (10918-1) and F7 (JPEG-LS SOF55).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


@dataclass(frozen=True)
class Geometry:
    """What the DICOM header declares about the pixel data."""

    rows: int
    cols: int
    frames: int
    samples: int
    bits_allocated: int


def check_frames(pixel_data: bytes, ts: uids.UID, geo: Geometry) -> None:
    """Raise ValueError describing the first frame whose codestream disagrees with `geo`."""
    if ts not in _JPEG | _J2K | _RLE:
        return
    count = 0
    for index, frame in enumerate(generate_frames(pixel_data, number_of_frames=geo.frames)):
        count += 1
        body = frame.rstrip(b"\x00\xff")  # fragments are padded to an even length (00 or FF)
        try:
            if ts in _JPEG:
                _check_jpeg(body, geo)
            elif ts in _J2K:
                _check_j2k(body, geo)
            else:
                _check_rle(frame, geo)
        except (ValueError, struct.error, IndexError) as exc:
            raise ValueError(f"frame {index}: {exc}") from exc
    if count < geo.frames:
        raise ValueError(f"{count} compressed frame(s) for NumberOfFrames {geo.frames}")


def _check_jpeg(body: bytes, geo: Geometry) -> None:
    if body[:2] != b"\xff\xd8":
        raise ValueError("JPEG codestream does not start with SOI (FFD8)")
    if body[-2:] != b"\xff\xd9":
        raise ValueError("JPEG codestream does not end with EOI (FFD9): data missing or damaged")
    pos = 2
    while pos + 4 <= len(body):
        if body[pos] != 0xFF:
            raise ValueError(f"JPEG marker expected at byte {pos}")
        marker = body[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", body[pos + 2 : pos + 4])
        if marker in _SOF:
            precision, height, width, comps = struct.unpack(">BHHB", body[pos + 4 : pos + 10])
            if height == 0:  # libjpeg's JPEG-LS decoder then searches for a DNL marker without end
                raise ValueError("JPEG frame header gives 0 lines (height left to a DNL marker); not decoded")
            _compare("JPEG", width, height, comps, precision, geo)
            return
        if marker == 0xDA or length < 2:
            break
        pos += 2 + length
    raise ValueError("JPEG codestream has no frame header (SOF) before its scan data")


def _check_j2k(body: bytes, geo: Geometry) -> None:
    start = body.find(b"\xff\x4f\xff\x51", 0, 4096)
    if start < 0:
        raise ValueError("no JPEG 2000 codestream (SOC + SIZ markers) found")
    siz = body[start + 4 :]
    fields = struct.unpack(">HHIIIIIIIIH", siz[:38])
    xsiz, ysiz, xo, yo, comps = fields[2], fields[3], fields[4], fields[5], fields[10]
    depth = max((siz[38 + 3 * c] & 0x7F) + 1 for c in range(comps)) if comps else 0
    _compare("JPEG 2000", xsiz - xo, ysiz - yo, comps, depth, geo)
    if body[-2:] != b"\xff\xd9":
        raise ValueError("JPEG 2000 codestream does not end with EOC (FFD9): data missing or damaged")


def _check_rle(frame: bytes, geo: Geometry) -> None:
    if len(frame) < 64:
        raise ValueError(f"RLE frame of {len(frame)} bytes is shorter than its 64-byte header")
    header = struct.unpack("<16I", frame[:64])
    segments = header[0]
    want = geo.samples * max(geo.bits_allocated // 8, 1)
    if segments != want:
        raise ValueError(f"RLE header has {segments} segment(s), the DICOM header implies {want}")
    offsets = [*header[1 : 1 + segments], len(frame)]
    if offsets[0] != 64 or any(b <= a for a, b in itertools.pairwise(offsets)):
        raise ValueError(f"RLE segment offsets {offsets[:-1]} are not increasing from 64 within {len(frame)} bytes")


def _compare(kind: str, width: int, height: int, comps: int, depth: int, geo: Geometry) -> None:
    if (width, height) != (geo.cols, geo.rows):
        raise ValueError(
            f"{kind} codestream is {width}x{height} (width x height), "
            f"the header says Columns {geo.cols}, Rows {geo.rows}"
        )
    if comps != geo.samples:
        raise ValueError(f"{kind} codestream has {comps} component(s), SamplesPerPixel is {geo.samples}")
    if depth > geo.bits_allocated:
        raise ValueError(f"{kind} codestream precision {depth} bits exceeds BitsAllocated {geo.bits_allocated}")
