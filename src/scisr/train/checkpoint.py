"""Resumable training checkpoints: atomic saves, weights_only loads, and the settings fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from scisr.io.files import atomic_path

# Bumped whenever the checkpoint's contents change meaning (2: EMA weights, defaults of new keys; 3: seconds per
# stage in the progress), so a checkpoint of an older layout is never resumed: its fingerprint cannot match.
CHECKPOINT_FORMAT = 3


def settings_hash(settings: dict, data_sha256: str = "") -> str:
    """sha256 of the settings (canonical JSON), a data digest and the checkpoint format: resume only on a match."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":")) + data_sha256 + f"format{CHECKPOINT_FORMAT}"
    return hashlib.sha256(text.encode()).hexdigest()


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write `state` (tensors, numbers, strings, lists, dicts only) to `path` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` with torch.load(weights_only=True)."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)
