"""The DICOM part of the corpus (tests/corpus.py): pydicom's bundled test files, and pydicom-data's when installed,
mutated into bad and odd inputs, each with the outcome SciSR must give it."""

from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
from corpus_case import Case
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import UID

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def data_store() -> Path | None:
    """pydicom-data's folder, or None when it is not installed."""
    spec = importlib.util.find_spec("data_store")
    return Path(next(iter(spec.submodule_search_locations))) / "data" if spec else None


def _flip(data: bytes, seed: int, count: int, start: int, stop: int) -> bytes:
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    for pos in rng.integers(start, stop, count):
        out[pos] ^= int(rng.integers(1, 256))
    return bytes(out)


def _with_frame(src: Path, mutate, **attrs) -> pydicom.Dataset:
    """src with its (single) compressed frame replaced by mutate(frame) and attributes set."""
    ds = pydicom.dcmread(src)
    frames = list(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1)))
    ds.PixelData = encapsulate([mutate(f) for f in frames])
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def dicom_cases(out: Path) -> list[Case]:
    cases: list[Case] = []
    mr, rle = PYDICOM_FILES / "MR_small.dcm", PYDICOM_FILES / "MR_small_RLE.dcm"
    jls, j2k = PYDICOM_FILES / "MR_small_jpeg_ls_lossless.dcm", PYDICOM_FILES / "MR_small_jp2klossless.dcm"

    def save(ds: pydicom.Dataset, name: str, status: str, reason: str, kind: str) -> None:
        ds.save_as(out / name, enforce_file_format=False)
        cases.append(Case(kind, name, status, reason))

    def copy(src: Path, name: str, status: str, reason: str, kind: str) -> None:
        (out / name).write_bytes(src.read_bytes())
        cases.append(Case(kind, name, status, reason))

    copy(mr, "mr_intact.dcm", "ok", "", "intact MR (reference for same-instance copies)")
    copy(
        j2k,
        "mr_same_instance_j2k.dcm",
        "skipped",
        "(same SOP instance, another encoding",
        "same SOP instance, lossless J2K copy (pixels equal)",
    )

    def repeat_runs(frame: bytes) -> bytes:
        return frame[:64] + bytes([0x81]) * (len(frame) - 64)

    save(
        _with_frame(rle, repeat_runs),
        "mr_same_instance_rle_garbled.dcm",
        "skipped",
        "decoder warned: The decoded RLE segment",
        "same SOP instance, garbled RLE (pylibjpeg-rle panics on it)",
    )

    ct = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    ct.save_as(out / "ct_intact.dcm")
    ct_bad = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    ct_bad.PixelData = _flip(ct_bad.PixelData, 1, 40, 0, len(ct_bad.PixelData))
    ct_bad.save_as(out / "ct_same_instance_flipped.dcm")
    cases += [
        Case(
            "same SOP instance, both decode, pixels differ (kept copy)",
            "ct_intact.dcm",
            "skipped",
            "conflict: SOP instance",
        ),
        Case(
            "same SOP instance, both decode, pixels differ (second copy)",
            "ct_same_instance_flipped.dcm",
            "skipped",
            "also in ct_intact.dcm with different pixels (both lossless",
        ),
    ]
    save(
        _with_frame(rle, lambda f: f, Rows=60000, Columns=60000),
        "rle_huge.dcm",
        "skipped",
        "over the limit of 67,108,864",
        "RLE declaring a huge image (60000x60000)",
    )
    ds = pydicom.dcmread(mr)
    ds.Rows = ds.Columns = 65535
    save(ds, "native_huge.dcm", "skipped", "over the limit", "native data declaring 65535x65535")

    def seg5(frame: bytes) -> bytes:
        return struct.pack("<I", 5) + frame[4:]

    save(
        _with_frame(rle, seg5),
        "rle_segments.dcm",
        "skipped",
        "RLE header has 5 segment(s)",
        "RLE header: wrong segment count",
    )

    def bad_offsets(frame: bytes) -> bytes:
        return frame[:8] + struct.pack("<I", 30) + frame[12:]

    save(
        _with_frame(rle, bad_offsets),
        "rle_offsets.dcm",
        "skipped",
        "segment offsets",
        "RLE header: offsets not increasing",
    )

    def rle_short(frame: bytes) -> bytes:
        return frame[: len(frame) - 600]

    save(
        _with_frame(rle, rle_short),
        "rle_missing_bytes.dcm",
        "skipped",
        "cannot decode RLE Lossless",
        "RLE with its last 600 bytes missing",
    )
    emri_ls = (data_store() or Path("/nonexistent")) / "emri_small_jpeg_ls_lossless.dcm"
    if emri_ls.exists():
        save(
            _with_frame(emri_ls, lambda f: _flip(f, 3, 8, 100, len(f) - 4)),
            "jls_flipped_bits12.dcm",
            "skipped",
            "outside BitsStored 12's range",
            "JPEG-LS (BitsStored 12) with 8 flipped bytes",
        )
    save(
        _with_frame(jls, lambda f: f[: len(f) // 2]),
        "jls_truncated.dcm",
        "skipped",
        "does not end with EOI",
        "JPEG-LS codestream cut in half",
    )
    save(
        _with_frame(jls, lambda f: f[:200] + f[400:], SOPInstanceUID=pydicom.uid.generate_uid()),
        "jls_missing_middle.dcm",
        "ok",
        "",
        "JPEG-LS (BitsStored 16) with 200 bytes missing in the middle (undetectable: decodes to a wrong image)",
    )
    save(
        _with_frame(jls, lambda f: f, Columns=63),
        "jls_columns_minus_one.dcm",
        "skipped",
        "codestream is 64x64 (width x height), the header says Columns 63",
        "JPEG-LS, Columns one smaller than the data",
    )
    save(
        _with_frame(j2k, lambda f: f[: len(f) - 300]),
        "j2k_truncated.dcm",
        "skipped",
        "does not end with EOC",
        "JPEG 2000 with its last 300 bytes missing",
    )
    save(
        _with_frame(j2k, lambda f: f[:2] + f[4:]),
        "j2k_no_siz.dcm",
        "skipped",
        "no JPEG 2000 codestream (SOC + SIZ",
        "JPEG 2000 with the SIZ marker bytes missing",
    )
    save(
        _with_frame(j2k, lambda f: f[:50] + b"\xff" * 8 + f[58:]),
        "j2k_header_flipped.dcm",
        "skipped",
        "cannot decode JPEG 2000",
        "JPEG 2000 with 8 header bytes overwritten",
    )
    jpeg = PYDICOM_FILES / "SC_rgb_jpeg_dcmtk.dcm"
    save(
        _with_frame(jpeg, lambda f: f[: len(f) - 100]),
        "jpeg_truncated.dcm",
        "skipped",
        "does not end with EOI",
        "JPEG baseline with its last 100 bytes missing",
    )
    save(
        _with_frame(jpeg, lambda f: f, Rows=99),
        "jpeg_rows_minus_one.dcm",
        "skipped",
        "the header says Columns 100, Rows 99",
        "JPEG baseline, Rows one smaller than the data",
    )
    save(
        _with_frame(jpeg, lambda f: _flip(f, 5, 4, len(f) // 2, len(f) - 4)),
        "jpeg_flipped_entropy.dcm",
        "ok",
        "",
        "JPEG baseline, 4 flipped bytes in entropy-coded data (undetectable: decodes to a wrong image)",
    )

    ds = pydicom.dcmread(mr)
    ds.Columns = 63
    ds.PixelData = ds.PixelData[: 64 * 63 * 2 + 128]
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    save(
        ds,
        "native_columns_minus_one.dcm",
        "skipped",
        "bytes more than Rows 64 x Columns 63",
        "native, Columns one smaller than the data",
    )
    copy(
        PYDICOM_FILES / "MR_small_padded.dcm",
        "native_excess_padding.dcm",
        "skipped",
        "128 bytes more than",
        "native, 128 bytes of excess padding (pydicom only warns)",
    )
    copy(
        PYDICOM_FILES / "MR_truncated.dcm",
        "native_truncated_pixels.dcm",
        "skipped",
        "pixel data too short",
        "native pixel data 62 bytes short",
    )
    data = mr.read_bytes()
    (out / "truncated_half.dcm").write_bytes(data[: len(data) // 2])
    cases.append(Case("file cut in half", "truncated_half.dcm", "skipped", "pixel data too short"))
    (out / "truncated_header.dcm").write_bytes(data[:300])
    cases.append(Case("file cut inside the header", "truncated_header.dcm", "skipped", "no pixel data"))
    (out / "empty.dcm").write_bytes(b"")
    cases.append(Case("zero-length .dcm", "empty.dcm", "skipped", "no pixel data"))

    def header_edit(
        name: str, status: str, reason: str, kind: str, patch: tuple[bytes, bytes] = (b"", b""), **attrs
    ) -> None:
        ds = pydicom.dcmread(mr)
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        for key, value in attrs.items():
            setattr(ds, key, value)
        save(ds, name, status, reason, kind)
        if patch[0]:  # pydicom will not write an invalid value: patch the bytes (same length)
            raw = (out / name).read_bytes()
            assert raw.count(patch[0]) == 1
            (out / name).write_bytes(raw.replace(patch[0], patch[1]))

    header_edit(
        "slope_abc.dcm",
        "skipped",
        "RescaleSlope 'abc' is not a number",
        "RescaleSlope 'abc'",
        (b"9.25", b"abc "),
        RescaleSlope="9.25",
    )
    header_edit(
        "intercept_inf.dcm",
        "skipped",
        "RescaleIntercept is inf",
        "RescaleIntercept 'inf'",
        (b"7.75", b"inf "),
        RescaleIntercept="7.75",
    )
    header_edit(
        "frames_abc.dcm",
        "skipped",
        "NumberOfFrames 'ab' is not an integer",
        "NumberOfFrames 'ab' (IS)",
        (b"\x08\x00IS\x02\x007 ", b"\x08\x00IS\x02\x00ab"),
        NumberOfFrames="7",
    )
    header_edit(
        "bits_stored_20.dcm",
        "skipped",
        "BitsStored 20 is not within",
        "BitsStored 20 > BitsAllocated 16",
        BitsStored=20,
    )
    header_edit("samples_2.dcm", "skipped", "SamplesPerPixel 2 is not 1 or 3", "SamplesPerPixel 2", SamplesPerPixel=2)
    header_edit(
        "pr_state.dcm",
        "skipped",
        "Grayscale Softcopy Presentation State Storage",
        "presentation state",
        SOPClassUID=UID("1.2.840.10008.5.1.4.1.1.11.1"),
    )
    header_edit(
        "kos.dcm",
        "skipped",
        "Key Object Selection Document Storage",
        "key object selection (KOS)",
        SOPClassUID=UID("1.2.840.10008.5.1.4.1.1.88.59"),
    )
    header_edit(
        "private_class.dcm",
        "skipped",
        "unknown SOP class 1.2.3.4.5",
        "private/unknown SOP class",
        SOPClassUID=UID("1.2.3.4.5"),
    )
    for src, name, reason, kind in (
        ("liver_1frame.dcm", "seg.dcm", "Segmentation Storage", "SEG object (label masks)"),
        ("rtstruct.dcm", "rtstruct.dcm", "RT Structure Set Storage", "RTSTRUCT"),
        ("test-SR.dcm", "sr.dcm", "Comprehensive SR Storage", "structured report (SR)"),
        ("rtdose_1frame.dcm", "rtdose.dcm", "RT Dose Storage", "RT Dose grid"),
        ("waveform_ecg.dcm", "ecg.dcm", "Waveform Storage", "ECG waveform"),
    ):
        copy(PYDICOM_FILES / src, name, "skipped", reason, kind)

    data = mr.read_bytes()
    old_ts = b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\x00"
    new_ts = b"\x02\x00\x10\x00UI\x12\x001.2.840.10008.1.1\x00"  # Verification SOP Class: not a transfer syntax
    group = struct.unpack("<I", data[140:144])[0]
    patched = data[:140] + struct.pack("<I", group - 2) + data[144:]
    assert patched.count(old_ts) == 1
    (out / "ts_not_a_transfer_syntax.dcm").write_bytes(patched.replace(old_ts, new_ts))
    cases.append(
        Case(
            "non-transfer-syntax UID as Transfer Syntax",
            "ts_not_a_transfer_syntax.dcm",
            "skipped",
            "not a readable DICOM file",
        )
    )
    raw = bytearray(data)
    pos = raw.find(b"\x28\x00\x10\x00US")  # Rows: VR US -> ZZ
    raw[pos + 4 : pos + 6] = b"ZZ"
    (out / "unknown_vr.dcm").write_bytes(bytes(raw))
    cases.append(Case("unknown VR 'ZZ'", "unknown_vr.dcm", "skipped", "Unknown Value Representation 'ZZ'"))

    meta = pydicom.dcmread(PYDICOM_FILES / "image_dfl.dcm", stop_before_pixels=True)
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = b"".join(bomb.compress(bytes(8 << 20)) for _ in range(10)) + bomb.flush()
    head = (PYDICOM_FILES / "image_dfl.dcm").read_bytes()
    meta_end = 132 + 12 + int(meta.file_meta.FileMetaInformationGroupLength)
    (out / "deflate_bomb.dcm").write_bytes(head[:meta_end] + body)
    cases.append(
        Case(
            "deflated dataset inflating to 80 MiB (bomb)",
            "deflate_bomb.dcm",
            "skipped",
            "the deflated dataset declares",
        )
    )
    small = zlib.compressobj(9, zlib.DEFLATED, -15)
    (out / "deflate_ratio.dcm").write_bytes(head[:meta_end] + small.compress(bytes(16 << 20)) + small.flush())
    cases.append(
        Case(
            "deflated dataset of 16 MiB zeros (under the limit, 1000:1)",
            "deflate_ratio.dcm",
            "skipped",
            "a decompression bomb",
        )
    )
    return cases
