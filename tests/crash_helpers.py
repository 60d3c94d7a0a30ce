"""Readers that crash on demand, for the reader worker's tests (imported inside the worker process).

A file whose content starts with one of the markers below makes `read_frames` die the
way native code does (a segmentation fault, a hang, a runaway allocation); any other file is read
by SciSR's own reader.
"""

from __future__ import annotations

import ctypes
import time
from pathlib import Path

from scisr.io.limits import stage
from scisr.io.readers import read_frames as _read_frames

SEGV, HANG, HOG = b"CRASH-SEGV", b"CRASH-HANG", b"CRASH-HOG"


def _act(path: str) -> None:
    head = Path(path).read_bytes()[:16]
    if head.startswith(SEGV):
        with stage("a test decoder"):
            ctypes.string_at(0)  # reads address 0: SIGSEGV
    if head.startswith(HANG):
        time.sleep(3600)
    if head.startswith(HOG):
        blocks = []
        while True:
            blocks.append(bytearray(1 << 28))


def read_frames(path: str, **kwargs: object) -> list:
    _act(path)
    return _read_frames(path, **kwargs)
