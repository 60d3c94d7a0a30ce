"""The edge every reader shares: one error type out, declared sizes checked before allocation.

- `reader_edge` turns anything a decoder raises (including `BaseException` subclasses such as
  the Rust `PanicException` of pylibjpeg-rle, and `MemoryError`) into `ReadError` naming the
  file; only KeyboardInterrupt, SystemExit and GeneratorExit pass through.
- `check_declared` refuses a file whose header declares more decoded bytes than `max_bytes`
  before any decoder allocates them (the `extract.max_image_bytes` setting).
- `inflated_size` measures a zlib/deflate/gzip stream's output in bounded memory and stops
  counting past a limit, so a decompression bomb is refused without being inflated.
- `stage` names the native step a reader is in ("WCS parsing", "DICOM reading"); a worker process
  (`scisr.io.isolated`) publishes it, so a crash there is reported with the step that crashed.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scisr.io.frame import ReadError

# Decoded (stored) pixel bytes a single file may declare: rows x cols x frames x samples x bytes.
DEFAULT_MAX_BYTES = 1 << 30
LIMIT_NAME = "extract.max_image_bytes"
_PASS_THROUGH = (KeyboardInterrupt, SystemExit, GeneratorExit)
_CHUNK = 1 << 20
# Set by scisr.io.isolated's worker: called with the name of the step being entered ('' when left).
STAGE_HOOK: list = []


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Mark the block as the reader step `name` for a crash report (no-op outside a reader worker)."""
    if not STAGE_HOOK:
        yield
        return
    hook = STAGE_HOOK[0]
    previous = hook(name)
    try:
        yield
    finally:
        hook(previous)


@contextmanager
def reader_edge(path: Path, what: str) -> Iterator[None]:
    """Re-raise anything but ReadError/Ctrl-C/exit from the block as ReadError('<name>: <what> (...)')."""
    try:
        yield
    except ReadError:
        raise
    except _PASS_THROUGH:
        raise
    except MemoryError as exc:
        raise ReadError(
            f"{path.name}: out of memory while decoding ({exc or 'MemoryError'}); "
            f"lower {LIMIT_NAME} so such files are refused up front, or give the job more memory"
        ) from exc
    except BaseException as exc:  # native decoders raise BaseException subclasses (PanicException)
        raise ReadError(f"{path.name}: {what} ({type(exc).__name__}: {exc})") from exc


def check_declared(path: Path, nbytes: int, max_bytes: int, what: str) -> None:
    """Raise ReadError when a header declares more decoded bytes than `max_bytes`."""
    if nbytes > max_bytes:
        raise ReadError(
            f"{path.name}: {what} declares {nbytes:,} bytes of decoded pixels, over the limit of "
            f"{max_bytes:,} bytes; if the file is genuine raise {LIMIT_NAME} (max_bytes=)"
        )


def inflated_size(data: bytes, wbits: int, limit: int) -> int:
    """Bytes a zlib (15), raw deflate (-15) or gzip (31) stream inflates to; limit + 1 once over.

    Memory stays bounded by the chunk size whatever the stream; concatenated gzip members are
    followed. Raises zlib.error on a corrupt stream.
    """
    total, rest = 0, data
    while rest:
        inflater = zlib.decompressobj(wbits)
        pending = rest
        while True:
            out = inflater.decompress(pending, _CHUNK)
            total += len(out)
            if total > limit:
                return limit + 1
            pending = inflater.unconsumed_tail
            if inflater.eof or (not pending and len(out) < _CHUNK):
                break
        if not inflater.eof:
            raise zlib.error("compressed stream ends before its end marker (truncated)")
        rest = inflater.unused_data if wbits > 16 else b""
    return total
