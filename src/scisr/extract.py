"""Extract phase, the decoding side: a work unit's manifest files -> candidate float32 frames + a unit table.

The phase runs as work units (config `compute.data_units`): each unit decodes its share of the manifest's files
(`unit_members`: files grouped by their folder, a series in DICOM collections, or one by one when the files share
few folders) and writes every frame that passes the per-frame checks below as a candidate TIFF in physical units,
plus one row per frame (or per unreadable file, frame -1) in its unit table (`write_candidates`). The gather
(`scisr.extract_gather`) then settles duplicates and conflicts across every unit in one global order and writes
the dataset's index.tsv and frames; `extract_dataset` runs one unit over the whole manifest and its gather.

Per-file and per-frame rules (the unit's side):
- a file that cannot be decoded is skipped with the reader's message as the reason; with a
  `reader` (`scisr.io.isolated.IsolatedReader`, as the workflow runs it) files are parsed in a
  worker process, and a file that crashes it (a signal in native code, its memory or time limit)
  is skipped as "reader crashed" naming the signal and the reader's step;
- DICOM frames whose Modality is not in `modalities` (when given) are skipped;
- DICOM frames whose image type the dataset's frame rules (`FrameRules`, config
  `datasets.<name>.frames`) refuse are skipped naming the value: by default only ORIGINAL,
  magnitude frames that are not localizers, phase, field or parameter maps are kept;
- frames smaller than `MIN_SIZE` px in a dimension, constant, or without a finite pixel are skipped;
- DICOM files that hold no image (SEG, RT, SR, presentation states, KOS...) are skipped naming
  their SOP class; files over `max_bytes` of declared pixels are skipped naming the limit.
Duplicates and conflicts (the gather's side) are described in `scisr.extract_gather`.

De-identification (`scisr.deid`): subject, series, source path and SOP instance UIDs are written as keyed
pseudonyms, and reasons that would name a source file name its pseudonym instead. `key_map` (outside results/)
maps every pseudonym the unit made back; the gather merges the units' key maps.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from scisr.deid import Pseudonymizer, load_secret, write_key_map
from scisr.extract_gather import gather_units
from scisr.index import CANDIDATE, write_candidates
from scisr.io import DEFAULT_MAX_BYTES, Frame, NotAnImageError, ReadError
from scisr.io.files import remove_stale, write_tiff
from scisr.io.isolated import IsolatedReader, ReaderCrashed
from scisr.io.readers import read_frames
from scisr.schema import schema_default
from scisr.sources.manifest import read_manifest
from scisr.units import unit_of

log = logging.getLogger("scisr.extract")

MIN_SIZE = 16
# What the reader worker runs to read a file (module:function).
READ_TARGET = "scisr.io.readers:read_frames"


def _schema_frames(key: str) -> tuple[str, ...]:
    """The schema's default for `datasets.<name>.frames.<key>` (config/schema.yaml is where the frame rules live)."""
    return tuple(str(v).strip().upper() for v in schema_default(f"datasets.*.frames.{key}"))


@dataclass(frozen=True)
class FrameRules:
    """Which DICOM frames to keep by image type (config `datasets.<name>.frames`; missing keys: the schema's defaults).

    `pixel_data`: allowed first ImageType/FrameType values (ORIGINAL, DERIVED); empty allows any.
    `exclude`: values (3rd onward) that skip a frame, e.g. LOCALIZER, FIELD_MAP.
    `components`: allowed complex components (MAGNITUDE, PHASE, REAL, IMAGINARY, MIXED), tested
    only when the header tells the component; empty allows any.
    """

    pixel_data: tuple[str, ...] = field(default_factory=lambda: _schema_frames("pixel_data"))
    exclude: tuple[str, ...] = field(default_factory=lambda: _schema_frames("exclude"))
    components: tuple[str, ...] = field(default_factory=lambda: _schema_frames("components"))

    @classmethod
    def from_config(cls, config: Mapping | None) -> FrameRules:
        """Rules from a config block (missing keys: the schema's defaults)."""
        config = dict(config or {})
        upper = {
            k: tuple(str(v).strip().upper() for v in config[k])
            for k in ("pixel_data", "exclude", "components")
            if k in config
        }
        return cls(**upper)

    def refuse(self, fr: Frame) -> str:
        """Why a frame is skipped ('' to keep it); frames without an image type are kept."""
        types, component = fr.image_type, fr.complex_component
        if not types and not component:
            return ""
        shown = "\\".join(types) or "(none)"
        if self.pixel_data and types and types[0] not in self.pixel_data:
            return f"image type {shown}: {types[0]} not in frames.pixel_data {list(self.pixel_data)}"
        hit = [v for v in types[2:] if v in self.exclude]
        if hit:
            return f"image type {shown}: {hit[0]} is in frames.exclude"
        if self.components and component and component not in self.components:
            return f"image type {shown}: complex component {component} not in frames.components {list(self.components)}"
        return ""


def unit_members(paths: Sequence[str], units: int) -> dict[str, int]:
    """{path: unit 1..`units`} for the manifest's relative paths: by the sha256 of each file's folder (a series
    stays in one unit), or of the path itself when the files share fewer folders than there are units.

    A file's unit depends only on its own path (and whether the manifest has enough folders), never on its row.
    """
    folders = {str(PurePosixPath(p).parent) for p in paths}
    by_folder = len(folders) >= units
    return {path: unit_of(str(PurePosixPath(path).parent) if by_folder else path, units) for path in paths}


def extract_unit(
    raw_dir: str | os.PathLike,
    manifest: str | os.PathLike | pd.DataFrame,
    frames_dir: str | os.PathLike,
    table_path: str | os.PathLike,
    *,
    secret: str | os.PathLike | bytes,
    key_map: str | os.PathLike | None = None,
    unit: int = 1,
    units: int = 1,
    modalities: list[str] | None = None,
    frames: Mapping | FrameRules | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    reader: IsolatedReader | None = None,
) -> pd.DataFrame:
    """Decode unit `unit` of `units` of the manifest: candidate frames into `frames_dir`, the unit table into
    `table_path` (`write_candidates`); return the table.

    `secret` is the study's secret file (created when absent, `scisr.deid.load_secret`) or its bytes; `key_map`
    (optional) receives the pseudonyms this unit made. `frames` holds the frame rules (`FrameRules` or its config
    block). `max_bytes` caps the decoded pixel bytes one file may declare (config `extract.max_image_bytes`).
    `reader` parses the files in its worker process (module doc); without one they are parsed in this process.
    """
    if not 1 <= unit <= units:
        raise ValueError(f"unit {unit} is not one of 1..{units}")
    raw_dir, frames_dir = Path(raw_dir), Path(frames_dir)
    table = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    files = sorted(zip(table["path"].astype(str), _column(table, "subject")))
    rank = {rel: n for n, (rel, _) in enumerate(files)}
    member = unit_members(list(rank), units)
    mine = [(rel, hint) for rel, hint in files if member[rel] == unit]
    read = _Reads(reader, max_bytes)
    unit_state = _Unit(
        frames_dir,
        Pseudonymizer(secret if isinstance(secret, bytes) else load_secret(secret)),
        frames if isinstance(frames, FrameRules) else FrameRules.from_config(frames),
        set(modalities) if modalities else None,
    )
    frames_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    with _quiet_readers() as muted:
        for rel, hint in mine:
            file_rows = list(_read_file(raw_dir / rel, rel, hint, unit_state, read))
            lossy = int(any(row["lossy"] for row in file_rows))  # the gather keeps lossless copies first
            for n, row in enumerate(file_rows):
                rows.append({**row, "order_lossy": lossy, "order_rank": rank[rel], "order_frame": n})
    if muted:
        log.info(
            "%d reader warning(s) and log line(s) not shown: they may quote header values such as names", len(muted)
        )
    out = write_candidates(rows, table_path)
    if key_map is not None:
        write_key_map(unit_state.ids.table(), key_map)
    remove_stale(frames_dir, "*.tif", set(out.loc[out["candidate"] != "", "candidate"]))
    log.info(
        "unit %d of %d: %d of %d file(s), %d candidate frame(s)", unit, units, len(mine), len(files), unit_state.written
    )
    if reader is not None and reader.started > 1:
        log.info("the reader worker was replaced %d time(s) after a crash or time limit", reader.started - 1)
    return out


def extract_dataset(
    raw_dir: str | os.PathLike,
    manifest: str | os.PathLike | pd.DataFrame,
    frames_dir: str | os.PathLike,
    index_path: str | os.PathLike,
    *,
    secret: str | os.PathLike | bytes,
    key_map: str | os.PathLike | None = None,
    dataset: str = "",
    modalities: list[str] | None = None,
    frames: Mapping | FrameRules | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    reader: IsolatedReader | None = None,
) -> pd.DataFrame:
    """The whole phase in one process: `frames_dir/<image_id>.tif` for every usable frame and `index_path`
    (one unit over the whole manifest, then its gather); return the index. Arguments as `extract_unit`."""
    frames_dir = Path(frames_dir)
    frames_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=frames_dir.parent, prefix=".extract-") as work:
        work = Path(work)
        fragment = work / "key_map.tsv" if key_map is not None else None
        extract_unit(
            raw_dir,
            manifest,
            work / "frames",
            work / "candidates.tsv",
            secret=secret,
            key_map=fragment,
            modalities=modalities,
            frames=frames,
            max_bytes=max_bytes,
            reader=reader,
        )
        return gather_units(
            [(work / "candidates.tsv", work / "frames")],
            frames_dir,
            index_path,
            dataset=dataset,
            key_maps=[fragment] if fragment else [],
            key_map=key_map,
        )


@dataclass
class _Unit:
    """One unit's decoding state: where candidates go, the pseudonyms, the frame rules."""

    frames_dir: Path
    ids: Pseudonymizer
    rules: FrameRules
    wanted: set[str] | None
    written: int = 0


class _Drop(logging.Filter):
    def __init__(self, sink: list) -> None:
        super().__init__()
        self.sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        self.sink.append(record)
        return False


@contextlib.contextmanager
def _quiet_readers() -> Iterator[list]:
    """Keep pydicom's and astropy's warnings and log lines (which quote header values, e.g. an
    invalid PatientName) out of the job's log; yield the list that collects them."""
    muted: list = []
    # Creating the "astropy" logger before astropy is imported would make it a plain Logger, and astropy's import
    # then fails ("'Logger' object has no attribute '_set_defaults'"): only existing loggers get the filter.
    loggers = [logging.getLogger(name) for name in ("pydicom", "astropy") if name == "pydicom" or name in sys.modules]
    drop = _Drop(muted)
    for logger in loggers:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield muted
        muted.extend(caught)
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def scrub(text: str, rel: str, token: str) -> str:
    """`text` with the relative path `rel` and each of its folder and file names (3+ characters,
    as whole words) replaced by `token`: reader messages name the file, and names can be names."""
    parts = {rel, *PurePosixPath(rel).parts}
    for part in sorted((p for p in parts if len(p) >= 3), key=len, reverse=True):
        text = re.sub(rf"(?<![\w^]){re.escape(part)}(?![\w^])", lambda _: token, text)
    return text


def pixel_hash(image: np.ndarray) -> str:
    """SHA-256 of a frame's float32 values and shape (NaN and -0.0 made canonical)."""
    values = np.ascontiguousarray(image, dtype=np.float32) + np.float32(0.0)  # -0.0 -> 0.0
    values[np.isnan(values)] = np.float32("nan")
    digest = hashlib.sha256(str(values.shape).encode())
    digest.update(values.astype("<f4").tobytes())
    return digest.hexdigest()


@dataclass
class _Reads:
    """The phase's read of a file, in `reader`'s worker process when there is one."""

    reader: IsolatedReader | None
    max_bytes: int

    def frames(self, path: Path) -> list[Frame]:
        if self.reader is None:
            return read_frames(path, max_bytes=self.max_bytes)
        return self.reader.call(READ_TARGET, path, max_bytes=self.max_bytes)


def _read_file(path: Path, rel: str, subject_hint: str, unit: _Unit, read: _Reads) -> Iterator[dict]:
    """Yield the unit-table row of every frame of one file (or one row if it cannot be read); never raises."""
    ids = unit.ids
    source = ids.source(rel)
    try:
        frames = read.frames(path)
    except ReaderCrashed as exc:
        yield _unread_row(source, ids.subject(subject_hint), scrub(str(exc), rel, source), "reader crashed")
        return
    except NotAnImageError as exc:
        yield _unread_row(source, ids.subject(subject_hint), scrub(str(exc), rel, source), "not an image")
        return
    except ReadError as exc:
        yield _unread_row(source, ids.subject(subject_hint), scrub(str(exc), rel, source), "unreadable")
        return
    except Exception as exc:  # a reader bug must not stop the run
        log.exception("unexpected %s reading %s", type(exc).__name__, source)
        reason = scrub(f"{source}: unexpected {type(exc).__name__}: {exc}", rel, source)
        yield _unread_row(source, ids.subject(subject_hint), reason, "unreadable")
        return
    for fr in frames:
        status, reason, kind = _check(fr, unit)
        candidate = digest = ""
        if status == CANDIDATE:
            digest = pixel_hash(fr.image)
            candidate = f"c{unit.written:07d}.tif"
            write_tiff(unit.frames_dir / candidate, fr.image)
            unit.written += 1
        sky = fr.sky or ("", "", "")
        yield {
            "image_id": "",
            "subject_id": ids.subject(subject_hint or fr.subject_id),
            "series_id": ids.series(fr.series_id),
            "source_path": source,
            "frame": fr.frame,
            "rows": fr.image.shape[0],
            "cols": fr.image.shape[1],
            "original_dtype": fr.original_dtype,
            "modality": fr.modality,
            "status": status,
            "reason": scrub(reason, rel, source),
            "subject_rule": "source" if subject_hint else fr.subject_rule,
            "image_type": _image_type(fr),
            "slice_position": "" if fr.slice_position is None else fr.slice_position,
            "sky_ra": _round(sky[0]),
            "sky_dec": _round(sky[1]),
            "sky_radius": _round(sky[2]),
            "kind": kind,
            "lossy": fr.lossy,
            "digest": digest,
            "instance": ids.uid(fr.instance_id) if fr.instance_id and status == CANDIDATE else "",
            "predecessors": ";".join(ids.uid(u) for u in fr.meta.get("predecessors", [])) if digest else "",
            "candidate": candidate,
        }


def _image_type(fr: Frame) -> str:
    text = "\\".join(fr.image_type)
    return f"{text}/{fr.complex_component}" if fr.complex_component else text


def _round(value: float | str) -> str:
    return "" if value == "" else f"{float(value):.6f}"


def _check(fr: Frame, unit: _Unit) -> tuple[str, str, str]:
    """(status, reason, reason kind) of one frame by the per-frame rules: CANDIDATE when it passes them all."""
    is_dicom = fr.meta.get("format") == "dicom"
    if unit.wanted is not None and is_dicom and fr.modality not in unit.wanted:
        return "skipped", f"modality {fr.modality or '(none)'} not in {sorted(unit.wanted)}", "modality"
    refused = unit.rules.refuse(fr) if is_dicom else ""
    if refused:
        return "skipped", refused, "frame type"
    rows, cols = fr.image.shape
    if min(rows, cols) < MIN_SIZE:
        return "skipped", f"too small: {rows}x{cols} (< {MIN_SIZE} px)", "too small"
    finite = np.isfinite(fr.image)
    if not finite.any():
        return "skipped", "no finite pixel values", "no finite pixels"
    values = fr.image[finite]
    if values.min() == values.max():
        return "skipped", f"constant image (every pixel {values.min():g})", "constant"
    return CANDIDATE, "", CANDIDATE


def _unread_row(source: str, subject: str, reason: str, kind: str) -> dict:
    return {
        "image_id": "",
        "subject_id": subject,
        "series_id": "",
        "source_path": source,
        "frame": -1,
        "rows": 0,
        "cols": 0,
        "original_dtype": "",
        "modality": "",
        "status": "skipped",
        "reason": reason,
        "subject_rule": "source" if subject else "",
        "kind": kind,
        "lossy": False,
    }


def _column(table: pd.DataFrame, name: str) -> list[str]:
    if name not in table.columns:
        return [""] * len(table)
    return ["" if pd.isna(v) else str(v) for v in table[name]]
