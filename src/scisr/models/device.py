"""Choosing the torch device for training and inference."""

from __future__ import annotations

import torch


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
    return dev
