"""The extract phase's `index.tsv`: its columns, its one writer and its one reader.

Kept apart from `scisr.extract` (which decodes files and so loads the DICOM/FITS readers) so that
normalize, split and the report read the index without the reader stack in their environments.
"""

from __future__ import annotations

import os

import pandas as pd

from scisr.io.files import write_text_atomic

INDEX_COLUMNS = [
    "image_id",
    "subject_id",
    "series_id",
    "source_path",
    "frame",
    "rows",
    "cols",
    "original_dtype",
    "modality",
    "status",
    "reason",
]


def write_index(rows: list[dict] | pd.DataFrame, index_path: str | os.PathLike) -> pd.DataFrame:
    """Write index rows (sorted by source path and frame) atomically; return the table written."""
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS).sort_values(["source_path", "frame"], ignore_index=True)
    index = index.astype({"frame": "int64", "rows": "int64", "cols": "int64"})
    write_text_atomic(index_path, index.to_csv(sep="\t", index=False, lineterminator="\n"))
    return index


def read_index(index_path: str | os.PathLike) -> pd.DataFrame:
    """Read an index.tsv written by `write_index`, every column as text (empty cells stay '')."""
    return pd.read_csv(index_path, sep="\t", dtype=str, keep_default_na=False)
