"""Resumable training checkpoints: atomic saves, weights_only loads, and the settings fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from scisr.io.files import atomic_path


def settings_hash(settings: dict, data_sha256: str = "") -> str:
    """sha256 of the settings (canonical JSON) plus a data digest: a checkpoint resumes only on a match."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":")) + data_sha256
    return hashlib.sha256(text.encode()).hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write `state` (tensors, numbers, strings, lists, dicts only) to `path` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` with torch.load(weights_only=True)."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)
