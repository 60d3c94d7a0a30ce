"""One corpus file and the outcome SciSR must give it (tests/corpus.py, tests/corpus_dicom.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Case:
    """One corpus file and its expected index row: status and a substring of the reason."""

    kind: str
    name: str
    status: str
    reason: str = ""
