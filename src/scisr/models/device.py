"""Choosing the torch device for training and inference.

A job uses the GPUs it can see. Under SLURM (or any scheduler that sets CUDA_VISIBLE_DEVICES)
that is exactly the GPU it was given, which torch calls cuda:0. Under torchrun each process
takes the GPU of its LOCAL_RANK. On a workstation where one job sees several GPUs, plain
'cuda' claims the first GPU no other SciSR job holds (`scisr.compute.claim_gpu`: a lock file
per GPU, held until the process exits), so `--resources gpu=N` with N concurrent jobs puts them
on N different GPUs instead of all on GPU 0.
"""

from __future__ import annotations

import os

import torch

from scisr.compute import claim_gpu


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
