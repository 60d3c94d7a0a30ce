"""Extract phase, the gathering side: the units' candidate frames -> the dataset's index.tsv and frames.

Every unit table (`scisr.extract.write_candidates`) is replayed in one global order, the order a single process
reading the whole manifest would follow: lossless files first, then by manifest path, then each file's frames in
order; so the index, its image ids and which copy of a duplicate is kept do not depend on how many units there
were. Image ids are `<dataset>-<subject digest>-<n>` (n counts the subject's frames in that order). Kept frames
are hard links to the units' candidate files (copies where the file system refuses links).

Duplicates are skipped, naming the kept copy: (a) the same DICOM SOP instance and frame whose pixels agree with
the kept copy (identical when both are lossless; PSNR >= `LOSSY_PSNR_DB` over the kept copy's value range when
either is lossy), or a lossy re-encoding of a kept instance (SourceImageSequence "uncompressed predecessor");
(b) identical float32 pixel values (so byte order and encoding do not matter). Two copies of one SOP instance
and frame that both decode but disagree beyond that tolerance are a conflict: no copy can be trusted, so every
copy of that instance/frame is skipped with a reason naming the other file (a garbled copy that decodes "ok"
never wins silently). The index is sorted by source path and frame.

The key map is the union of the units' key maps, keeping a SOP instance UID only where a reason names it.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from scisr.deid import KEY_MAP_COLUMNS, read_key_map, write_key_map
from scisr.index import CANDIDATE, INDEX_COLUMNS, read_candidates, write_index
from scisr.io.files import link_or_copy, read_tiff, remove_stale

log = logging.getLogger("scisr.extract")

# Lossy copies of one SOP instance must match the kept copy to this PSNR (over its value range).
LOSSY_PSNR_DB = 30.0
ORDER = ["order_lossy", "order_rank", "order_frame"]


@dataclass
class _Seen:
    """What has been kept so far: duplicate keys -> the kept image_id; kept rows by image_id."""

    dataset: str = ""
    instances: dict[tuple[str, int], str] = field(default_factory=dict)
    pixels: dict[str, str] = field(default_factory=dict)
    rows: dict[str, dict] = field(default_factory=dict)
    conflicts: set[tuple[str, int]] = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)

    def image_id(self, subject: str) -> str:
        """The next image id of a (pseudonymous) subject: `<dataset>-<digest>-<n>`."""
        n = self.counts[subject]
        self.counts[subject] += 1
        stem = subject.removeprefix("sub-") or "nosubject"
        return f"{self.dataset}-{stem}-{n:03d}" if self.dataset else f"{stem}-{n:03d}"


def gather_units(
    units: Sequence[tuple[str | os.PathLike, str | os.PathLike]],
    frames_dir: str | os.PathLike,
    index_path: str | os.PathLike,
    *,
    dataset: str = "",
    key_maps: Sequence[str | os.PathLike] = (),
    key_map: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Write `frames_dir/<image_id>.tif` for every kept frame and `index_path` from the `units`' (unit table,
    candidate frames folder) pairs; with `key_map`, the union of the units' `key_maps` there. Return the index."""
    if not units:
        raise ValueError(f"{index_path}: no extract unit to gather")
    frames_dir = Path(frames_dir)
    tables = []
    for table_path, folder in units:
        table = read_candidates(table_path)
        table["_file"] = [str(Path(folder) / name) if name else "" for name in table["candidate"]]
        tables.append(table)
    every = pd.concat(tables, ignore_index=True).sort_values(ORDER, kind="stable", ignore_index=True)
    seen, rows = _Seen(dataset), []
    for record in every.to_dict("records"):
        row = {column: record[column] for column in INDEX_COLUMNS}
        row.update(kind=record["kind"], lossy=bool(record["lossy"]), _file=record["_file"])
        if record["frame"] == -1:  # a file that could not be read: no frame, no image id
            rows.append(row)
            continue
        row["image_id"] = seen.image_id(record["subject_id"])
        if record["status"] == CANDIDATE:
            keys = [(record["instance"], record["frame"])] if record["instance"] else []
            predecessors = [uid for uid in record["predecessors"].split(";") if uid]
            status, reason, kind = _judge(row, record["digest"], keys, predecessors, seen)
            row.update(status=status, reason=reason, kind=kind)
            if status == "ok":
                seen.rows[row["image_id"]] = row
        rows.append(row)

    frames_dir.mkdir(parents=True, exist_ok=True)
    for image_id, row in seen.rows.items():
        link_or_copy(row["_file"], frames_dir / f"{image_id}.tif")
    index = write_index(rows, index_path)
    if key_map is not None:
        write_key_map(_merged_key_map(key_maps, index), key_map)
    remove_stale(frames_dir, "*.tif", {f"{i}.tif" for i in seen.rows})
    kinds = Counter(row["kind"] for row in rows)
    skipped = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()) if k != "ok") or "none"
    files = every["source_path"].nunique()
    log.info("extracted %d frame(s) from %d file(s); skipped: %s", kinds["ok"], files, skipped)
    return index


def _merged_key_map(paths: Sequence[str | os.PathLike], index: pd.DataFrame) -> pd.DataFrame:
    """The units' key maps in one table; SOP instance UIDs only where the index's reasons name them."""
    tables = [read_key_map(path) for path in paths]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=KEY_MAP_COLUMNS)
    table = table.drop_duplicates(["kind", "pseudonym"])
    named = set(" ".join(index["reason"].astype(str)).replace("(", " ").replace(")", " ").split())
    keep = (table["kind"] != "uid") | table["pseudonym"].isin(named)
    return table[keep].sort_values(["kind", "pseudonym"], ignore_index=True)


def _judge(
    row: dict, digest: str, keys: list[tuple[str, int]], predecessors: list[str], seen: _Seen
) -> tuple[str, str, str]:
    """(status, reason, reason kind) of a candidate frame against what was kept before it; registers it when kept.

    `keys` are its (SOP instance pseudonym, frame) keys; `predecessors` the pseudonyms of the instances it
    re-encodes. Reasons name the source file's pseudonym, never its path.
    """
    image_id, frame = row["image_id"], row["frame"]
    for key in keys:
        if key in seen.conflicts:
            why = f"conflict: SOP instance {key[0]} frame {key[1]} has copies with different pixels"
            return "skipped", why, "conflict"
        if key in seen.instances:
            kept = seen.instances[key]
            agree, detail = _agrees(row, digest, seen.rows[kept], seen)
            if not agree:
                return _conflict(seen, key, kept, row["source_path"], detail)
            copy = "lossy copy" if row["lossy"] else "another encoding"
            return _duplicate(seen, keys, kept, f"same SOP instance, {copy}{detail}", "same instance")
    for uid in predecessors:
        if (uid, frame) in seen.instances:
            copy = "lossy re-encoding" if row["lossy"] else "re-encoding"
            return _duplicate(seen, keys, seen.instances[(uid, frame)], f"{copy} of SOP instance {uid}", "re-encoding")
    if digest in seen.pixels:
        return _duplicate(seen, keys, seen.pixels[digest], "identical pixels", "identical pixels")
    for key in keys:
        seen.instances[key] = image_id
    seen.pixels[digest] = image_id
    return "ok", "", "ok"


def _agrees(row: dict, digest: str, kept_row: dict, seen: _Seen) -> tuple[bool, str]:
    """Whether a second copy of a kept SOP instance frame has the kept copy's pixels (see module doc)."""
    if seen.pixels.get(digest) == kept_row["image_id"]:
        return True, ""
    kept, image = read_tiff(kept_row["_file"]), read_tiff(row["_file"])
    if kept.shape != image.shape:
        return False, f"{kept.shape[0]}x{kept.shape[1]} vs {image.shape[0]}x{image.shape[1]}"
    finite = np.isfinite(kept)
    if not np.array_equal(finite, np.isfinite(image)):
        return False, "NaN pixels differ"
    a, b = kept[finite].astype(np.float64), image[finite].astype(np.float64)
    changed = float(np.mean(a != b))
    if not (row["lossy"] or kept_row["lossy"]):
        return False, f"both lossless, {changed:.1%} of pixels differ"
    span = float(a.max() - a.min()) or 1.0
    mse = float(np.mean((a - b) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(span**2 / mse)
    if psnr >= LOSSY_PSNR_DB:
        return True, f", PSNR {psnr:.1f} dB"
    return False, f"PSNR {psnr:.1f} dB < {LOSSY_PSNR_DB:g} dB, {changed:.1%} of pixels differ"


def _conflict(seen: _Seen, key: tuple[str, int], kept: str, source: str, detail: str) -> tuple[str, str, str]:
    """Skip this copy and the kept one: both decode but disagree, so neither can be trusted."""
    seen.conflicts.add(key)
    row = seen.rows.pop(kept)
    seen.pixels = {d: i for d, i in seen.pixels.items() if i != kept}
    row.update(status="skipped", kind="conflict")
    row["reason"] = f"conflict: SOP instance {key[0]} frame {key[1]} also in {source} with different pixels ({detail})"
    why = (
        f"conflict: SOP instance {key[0]} frame {key[1]} also in {row['source_path']} with different pixels ({detail})"
    )
    return "skipped", why, "conflict"


def _duplicate(seen: _Seen, keys: list[tuple[str, int]], kept: str, why: str, kind: str) -> tuple[str, str, str]:
    """Skip as a duplicate of `kept`; later copies of this instance point at `kept` too."""
    for key in keys:
        seen.instances.setdefault(key, kept)
    return "skipped", f"duplicate of {kept} ({why})", f"duplicate ({kind})"
