"""Untrusted files are parsed in a worker process, so that a native crash costs one file, not the run.

Decoders and header parsers written in C (wcslib's WCS fixes, the JPEG 2000, JPEG-LS and RLE
decoders, compressed FITS tiles, Pillow's codecs) can kill a process with a signal that no
`except` catches. `IsolatedReader` runs each call in a worker process (`python -m
scisr.io.isolated`, kept for the next call) under an address-space limit (its size after
imports plus `memory_mb`) and a time limit (`timeout_s` per call). A worker that dies, by a signal
or otherwise, or overruns the time is replaced, and the call raises `ReaderCrashed` (a
`ReadError`, so callers that skip unreadable files skip it) naming what happened and the reader's
step, as marked by `scisr.io.limits.stage`: "IM0001.dcm: reader crashed: signal 11 (SIGSEGV) in
WCS parsing". A `MemoryError` inside the worker stays the reader's own `ReadError`.

A call names its function as "module:function" (its first argument is the path). Arrays come back as pickle
protocol-5 out-of-band buffers received into writable memory, so a frame is not copied through an intermediate
pickle.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import resource
import signal
import subprocess
import sys
import warnings
from multiprocessing.connection import Connection
from pathlib import Path

from scisr.io import limits
from scisr.io.frame import ReadError

__all__ = ["DEFAULT_MEMORY_MB", "DEFAULT_TIMEOUT_S", "IsolatedReader", "ReaderCrashed"]

# The schema's extract.reader_memory_mb and extract.reader_timeout_s defaults, for `scisr upscale` and
# `scisr info`, which run without a config (tests/test_isolated.py checks they agree).
DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S = 8192, 300.0
_PRELOAD = ("numpy", "scisr.io.readers", "scisr.io.dicom", "scisr.io.fits", "scisr.io.raster", "scisr.io.sky")


class ReaderCrashed(ReadError):
    """The worker reading a file died (a signal, an exit) or ran past its time limit."""


class IsolatedReader:
    """A worker process that runs reader calls; use as a context manager (module doc)."""

    def __init__(self, *, memory_mb: int, timeout_s: float) -> None:
        self.memory_mb, self.timeout_s = memory_mb, timeout_s
        self.started = 0  # workers started so far (1 + one per crash)
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> IsolatedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, target: str, path: str | os.PathLike, **kwargs: object) -> object:
        """`target(path, **kwargs)` in the worker; its ReadError re-raised here, a crash as ReaderCrashed."""
        name = Path(path).name
        if self._proc is None:
            self._start()
        try:
            self._requests.send((target, os.fspath(path), kwargs))
            if not self._replies.poll(self.timeout_s):
                where = self._stage()
                self._stop(kill=True)
                raise ReaderCrashed(f"{name}: reader timed out after {self.timeout_s:g} s{where}")
            status, value = self._receive()
        except (EOFError, OSError) as exc:
            where = self._stage()
            code = self._stop(kill=True)
            raise ReaderCrashed(f"{name}: reader crashed: {_describe(code)}{where}") from exc
        self._stage()  # drain the step marks
        if status == "error":
            raise value
        return value

    def close(self) -> None:
        """Stop the worker (it is started again on the next call)."""
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._requests.send(None)
            self._stop(kill=False)

    def _start(self) -> None:
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        stage_r, stage_w = os.pipe()
        os.set_blocking(stage_r, False)
        os.set_blocking(stage_w, False)  # a full pipe drops step marks rather than block the worker
        root = str(Path(__file__).resolve().parents[2])  # the folder holding the scisr package
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        command = [
            sys.executable,
            "-m",
            "scisr.io.isolated",
            str(requests_r),
            str(replies_w),
            str(stage_w),
            str(self.memory_mb),
        ]
        try:
            self._proc = subprocess.Popen(
                command,
                pass_fds=(requests_r, replies_w, stage_w),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # readers' messages may quote header values
        except BaseException:
            for fd in (requests_w, replies_r, stage_r):
                os.close(fd)
            raise
        finally:
            for fd in (requests_r, replies_w, stage_w):
                os.close(fd)
        self._requests = Connection(requests_w, readable=False)
        self._replies = Connection(replies_r, writable=False)
        self._stage_r, self._step = stage_r, ""
        self.started += 1

    def _receive(self) -> tuple[str, object]:
        header, sizes = self._replies.recv()
        buffers = []
        for size in sizes:
            buffer = bytearray(size)
            self._replies.recv_bytes_into(buffer)
            buffers.append(buffer)
        return pickle.loads(header, buffers=buffers)

    def _stage(self) -> str:
        """' in <step>' for the step the worker last entered ('' when none); drains the marks."""
        text = b""
        try:
            while chunk := os.read(self._stage_r, 65536):
                text += chunk
        except (BlockingIOError, OSError):
            pass
        lines = text.decode(errors="replace").split("\n")
        if len(lines) > 1:
            self._step = lines[-2]
        return f" in {self._step}" if self._step not in ("", "-") else ""

    def _stop(self, *, kill: bool) -> int:
        proc, self._proc = self._proc, None
        if kill and proc.poll() is None:
            proc.kill()
        try:
            code = proc.wait(timeout=None if kill else 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        self._requests.close()
        self._replies.close()
        os.close(self._stage_r)
        return code


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _serve(requests: Connection, replies: Connection, stage_fd: int, memory_mb: int) -> None:
    """The worker's loop: read a request, run it, send (status, value) with out-of-band buffers."""
    warnings.simplefilter("ignore")  # readers that need warnings record them locally
    logging.disable(logging.CRITICAL)
    for module in _PRELOAD:
        importlib.import_module(module)
    if memory_mb > 0:
        with open("/proc/self/statm") as fh:
            size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = size + (memory_mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    current = ["-"]

    def mark(name: str) -> str:
        previous, current[0] = current[0], name or "-"
        with contextlib.suppress(BlockingIOError):
            os.write(stage_fd, f"{current[0]}\n".encode())
        return previous

    limits.STAGE_HOOK[:] = [mark]
    while True:
        try:
            request = requests.recv()
        except EOFError:
            return
        if request is None:
            return
        target, path, kwargs = request
        mark("-")
        module, _, function = target.partition(":")
        try:
            value: tuple = ("ok", getattr(importlib.import_module(module), function)(path, **kwargs))
        except ReadError as exc:
            exc.cause_name = (
                type(exc.__cause__).__name__ if exc.__cause__ is not None else ""
            )  # pickled; the cause is not
            value = ("error", exc)
        except MemoryError as exc:
            value = ("error", ReadError(f"{Path(path).name}: out of memory while reading ({exc})"))
        except Exception as exc:  # a reader bug: reported for the one file, the worker lives on
            value = ("error", ReadError(f"{Path(path).name}: unexpected {type(exc).__name__}: {exc}"))
        buffers: list[pickle.PickleBuffer] = []
        header = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        views = [buffer.raw() for buffer in buffers]
        replies.send((header, [view.nbytes for view in views]))
        for view in views:
            replies.send_bytes(view)
        del value, buffers, views


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops the worker
    requests_fd, replies_fd, stage_fd, memory_mb = (int(a) for a in argv)
    _serve(Connection(requests_fd, writable=False), Connection(replies_fd, readable=False), stage_fd, memory_mb)


if __name__ == "__main__":
    main(sys.argv[1:])
