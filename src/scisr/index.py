"""The extract phase's `index.tsv`: its columns, its one writer and its one reader.

Kept apart from `scisr.extract` (which decodes files and so loads the DICOM/FITS readers) so that
normalize, split and the report read the index without the reader stack in their environments.

The extract work units' tables (`write_candidates`, `read_candidates`) live here too: the index's columns with
empty image ids, plus what the gather (`scisr.extract_gather`) needs to settle duplicates across units.

Columns: image_id (`<dataset>-<subject digest>-<n>`), subject_id (pseudonym `sub-...`),
series_id (`ser-...`), source_path (`src-...`, a keyed hash of the path in the raw folder; the
key map beside the secret traces it back), frame, rows, cols, original_dtype, modality, status
(ok / skipped), reason; and what grouping needs: subject_rule (where the subject came from:
patient, study, object, source, file), image_type (DICOM ImageType / FrameType values joined by
backslash, then '/' and the complex component when known), slice_position (mm along the slice
normal, DICOM), sky_ra, sky_dec, sky_radius (degrees, ICRS: a FITS footprint's centre and
radius). Empty cells where a format has no such fact.
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
    "subject_rule",
    "image_type",
    "slice_position",
    "sky_ra",
    "sky_dec",
    "sky_radius",
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


CANDIDATE = "candidate"  # a unit table's status for a frame that passed every per-frame check
# The unit table: the index's columns (image_id empty: the gather numbers frames) and what the gather needs.
CANDIDATE_COLUMNS = [
    *INDEX_COLUMNS,
    "kind",
    "lossy",
    "digest",
    "instance",
    "predecessors",
    "candidate",
    "order_lossy",
    "order_rank",
    "order_frame",
]


CANDIDATE_INTEGERS = ("frame", "rows", "cols", "lossy", "order_lossy", "order_rank", "order_frame")


def write_candidates(rows: list[dict], path: str | os.PathLike) -> pd.DataFrame:
    """Write a unit table atomically (rows in the unit's order); return the table written."""
    table = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    for column in CANDIDATE_COLUMNS:
        if column not in CANDIDATE_INTEGERS:  # text: empty where a format has no such fact
            table[column] = table[column].astype(object).fillna("")
    table["lossy"] = table["lossy"].fillna(False).astype(bool).astype(int)
    write_text_atomic(path, table.to_csv(sep="\t", index=False, lineterminator="\n"))
    return table


def read_candidates(path: str | os.PathLike) -> pd.DataFrame:
    """Read a unit table written by `write_candidates` (text columns as text, order and size columns as integers)."""
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in CANDIDATE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; rerun the extract unit")
    for column in CANDIDATE_INTEGERS:
        table[column] = table[column].astype("int64")
    return table
