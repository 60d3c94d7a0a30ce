"""Work units of the data phases: which unit (1..n) a key belongs to, the same on every machine and run.

Extract keys files by their folder (or path), normalize and split key images by their subject pseudonym; a key's
unit depends only on the key and the number of units (sha256, not Python's per-process `hash`).
"""

from __future__ import annotations

import hashlib


def unit_of(key: str, units: int) -> int:
    """The work unit 1..`units` of `key`."""
    if units < 1:
        raise ValueError(f"compute.data_units must be >= 1, got {units}")
    return int(hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:12], 16) % units + 1
