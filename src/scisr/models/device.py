"""Choosing the torch device for training and inference.

A job uses the GPUs it can see. Under SLURM (or any scheduler that sets CUDA_VISIBLE_DEVICES)
that is exactly the GPU it was given, which torch calls cuda:0. Under torchrun each process
takes the GPU of its LOCAL_RANK. On a workstation where one job sees several GPUs, plain
'cuda' claims the first GPU no other SciSR job holds (a lock file per GPU, held until the
process exits), so `--resources gpu=N` with N concurrent jobs puts them on N different GPUs
instead of all on GPU 0.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path
from typing import IO

import torch

_HELD: list[IO] = []  # lock files of the GPUs this process claimed; released when it exits


def claim_gpu(count: int, lock_dir: str | os.PathLike | None = None) -> int:
    """Index of the first of `count` GPUs not locked by another process; the lock is kept."""
    folder = Path(lock_dir or os.environ.get("SCISR_GPU_LOCK_DIR", tempfile.gettempdir()))
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        handle = open(folder / f"scisr-gpu-{index}.lock", "a")
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


def resolve_device(device: str) -> torch.device:
    """torch.device for 'cpu', 'cuda' or 'cuda:N', refusing CUDA when torch cannot see a GPU."""
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device!r} requested but torch.cuda.is_available() is False "
            "(no visible GPU or a CPU-only torch build); use device='cpu'"
        )
    if dev.type == "cuda" and dev.index is None:
        if "LOCAL_RANK" in os.environ:
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        elif torch.cuda.device_count() > 1:
            dev = torch.device("cuda", claim_gpu(torch.cuda.device_count()))
        else:
            dev = torch.device("cuda", 0)
    return dev
