"""How often a damaged DICOM codestream is refused vs decoded to a wrong image, per encoding.

For each seed file, N mutants flip 1-4 random bytes (or cut 1-64 bytes) anywhere in the first
frame's compressed bytes; each mutant is read with scisr's DICOM reader and classified as
refused (ReadError), identical (damage had no effect) or WRONG (decoded "ok", pixels differ).
Usage: PYTHONPATH=src python bench/corruption_detection.py [N]
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.encaps import encapsulate, generate_frames

from scisr.io import ReadError
from scisr.io.readers import read_frames

PYD = Path(pydicom.__file__).parent / "data" / "test_files"
spec = importlib.util.find_spec("data_store")
STORE = Path(next(iter(spec.submodule_search_locations))) / "data" if spec else None
SEEDS = [
    ("RLE, BitsStored 16", PYD / "MR_small_RLE.dcm"),
    ("JPEG-LS, BitsStored 16", PYD / "MR_small_jpeg_ls_lossless.dcm"),
    ("JPEG 2000, BitsStored 16", PYD / "MR_small_jp2klossless.dcm"),
    ("JPEG baseline 8-bit RGB", PYD / "SC_rgb_jpeg_dcmtk.dcm"),
    ("JPEG lossless 8-bit RGB", PYD / "SC_rgb_jpeg_gdcm.dcm"),
]
if STORE:
    SEEDS += [
        ("RLE, BitsStored 12", STORE / "emri_small_RLE.dcm"),
        ("JPEG-LS, BitsStored 12", STORE / "emri_small_jpeg_ls_lossless.dcm"),
        ("JPEG 2000, BitsStored 12", STORE / "emri_small_jpeg_2k_lossless.dcm"),
    ]


def main(n: int) -> None:
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp())
    print("| encoding | mutants | refused | no effect | decoded wrong (undetected) |\n|---|---|---|---|---|")
    for label, seed in SEEDS:
        ds = pydicom.dcmread(seed)
        count = int(ds.get("NumberOfFrames", 1) or 1)
        frames = list(generate_frames(ds.PixelData, number_of_frames=count))
        reference = [f.image for f in read_frames(seed)]
        tally = {"refused": 0, "same": 0, "wrong": 0}
        for _ in range(n):
            frame = bytearray(frames[0])
            if rng.random() < 0.75:
                for pos in rng.integers(0, len(frame), int(rng.integers(1, 5))):
                    frame[pos] ^= int(rng.integers(1, 256))
            else:
                start = int(rng.integers(0, len(frame)))
                del frame[start : start + int(rng.integers(1, 65))]
            ds.PixelData = encapsulate([bytes(frame), *frames[1:]])
            ds.save_as(tmp / "m.dcm")
            try:
                got = [f.image for f in read_frames(tmp / "m.dcm")]
            except ReadError:
                tally["refused"] += 1
                continue
            same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(got, reference))
            tally["same" if same else "wrong"] += 1
        print(f"| {label} | {n} | {tally['refused']} | {tally['same']} | {tally['wrong']} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
