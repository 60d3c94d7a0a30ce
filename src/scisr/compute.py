"""Sharing one machine's GPUs between concurrent SciSR jobs: a lock file per GPU (stdlib only).

Snakemake's `--resources gpu=N` only counts GPUs; it does not say which one a job gets. A job that
sees several GPUs (no SLURM, no CUDA_VISIBLE_DEVICES per job) claims the first GPU whose lock no
other SciSR process holds. The lock is an `flock` on `scisr-gpu-<index>.lock` in
`$SCISR_GPU_LOCK_DIR` (default: the temporary folder); the kernel releases it when the process
exits, so a killed job never leaves its GPU taken.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

__all__ = ["claim_gpu"]

_HELD: list[IO] = []  # lock files of the GPUs this process claimed; released when it exits


def claim_gpu(count: int, lock_dir: str | os.PathLike | None = None) -> int:
    """Index of the first of `count` GPUs not locked by another process; the lock is kept."""
    folder = Path(lock_dir or os.environ.get("SCISR_GPU_LOCK_DIR", tempfile.gettempdir()))
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        handle = open(folder / f"scisr-gpu-{index}.lock", "a")  # noqa: SIM115 (held until the process exits)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _HELD.append(handle)
        return index
    raise RuntimeError(
        f"all {count} visible GPUs are held by other SciSR jobs; lower Snakemake's "
        f"--resources gpu=... to the number of GPUs or set CUDA_VISIBLE_DEVICES per job"
    )
