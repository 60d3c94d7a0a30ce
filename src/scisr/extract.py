"""Extract phase: every manifest file -> float32 TIFF frames in physical units + index.tsv.

Rules (the index records one row per frame, or one per unreadable file with frame -1):
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
  their SOP class; files over `max_bytes` of declared pixels are skipped naming the limit;
- duplicates are skipped, naming the kept copy: (a) the same DICOM SOP instance and frame whose
  pixels agree with the kept copy (identical when both are lossless; PSNR >= `LOSSY_PSNR_DB`
  over the kept copy's value range when either is lossy), or a lossy re-encoding of a kept
  instance (SourceImageSequence "uncompressed predecessor"); (b) identical float32 pixel values
  (so byte order and encoding do not matter);
- two copies of one SOP instance and frame that both decode but disagree beyond that tolerance
  are a conflict: no copy can be trusted, so every copy of that instance/frame is skipped with
  a reason naming the other file (a garbled copy that decodes "ok" never wins silently).
Which copy is kept does not depend on the manifest's row order: files are processed lossless
first, then by manifest path, and the first copy seen wins. The index is sorted by path, frame.

De-identification (`scisr.deid`): subject, series and source path are written as keyed
pseudonyms, image ids are `<dataset>-<subject digest>-<n>` (n counts the subject's frames in
processing order), and reasons that would name a source file or a SOP instance UID name its
pseudonym instead. `key_map` (outside results/) maps every pseudonym back.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from scisr.deid import Pseudonymizer, load_secret, write_key_map
from scisr.io import DEFAULT_MAX_BYTES, Frame, NotAnImageError, ReadError
from scisr.io.isolated import IsolatedReader, ReaderCrashed
from scisr.io.readers import is_lossy, read_frames
from scisr.index import write_index
from scisr.io.files import read_tiff, remove_stale, write_tiff
from scisr.sources.manifest import read_manifest

log = logging.getLogger("scisr.extract")

MIN_SIZE = 16
# What the reader worker runs for the phase's two reads of a file (module:function).
READ_TARGET, PROBE_TARGET = "scisr.io.readers:read_frames", "scisr.io.readers:is_lossy"
# Lossy copies of one SOP instance must match the kept copy to this PSNR (over its value range).
LOSSY_PSNR_DB = 30.0
# Image type values that mark a frame as no anatomical magnitude image (config frames.exclude default).
DEFAULT_EXCLUDE = (
    "LOCALIZER", "SCOUT", "PHASE", "FIELD_MAP", "B0_MAP", "B1_MAP", "PHASE_MAP", "PHASE_SUBTRACT",
    "T1_MAP", "T2_MAP", "T2_STAR_MAP", "PROTON_DENSITY_MAP", "ADC", "FA", "TRACEW", "VELOCITY",
)


@dataclass(frozen=True)
class FrameRules:
    """Which DICOM frames to keep by image type (config `datasets.<name>.frames`, schema defaults).

    `pixel_data`: allowed first ImageType/FrameType values (ORIGINAL, DERIVED); empty allows any.
    `exclude`: values (3rd onward) that skip a frame, e.g. LOCALIZER, FIELD_MAP.
    `components`: allowed complex components (MAGNITUDE, PHASE, REAL, IMAGINARY, MIXED), tested
    only when the header tells the component; empty allows any.
    """

    pixel_data: tuple[str, ...] = ("ORIGINAL",)
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    components: tuple[str, ...] = ("MAGNITUDE",)

    @classmethod
    def from_config(cls, config: Mapping | None) -> FrameRules:
        """Rules from a config block (missing keys: the defaults above)."""
        config = dict(config or {})
        upper = {k: tuple(str(v).strip().upper() for v in config[k]) for k in ("pixel_data", "exclude", "components") if k in config}
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


@dataclass
class _Seen:
    """What has been kept so far: duplicate keys -> the kept image_id; kept rows by image_id."""

    frames_dir: Path
    ids: Pseudonymizer
    rules: FrameRules = field(default_factory=FrameRules)
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
    """Write `frames_dir/<image_id>.tif` for every usable frame and `index_path`; return the index.

    `secret` is the study's secret file (created when absent, `scisr.deid.load_secret`) or its
    bytes; `key_map` (optional) receives the pseudonym -> original table. `frames` holds the
    frame rules (`FrameRules` or its config block). `max_bytes` caps the decoded pixel bytes one
    file may declare (config `extract.max_image_bytes`). `reader` parses the files in its worker
    process (module doc); without one they are parsed in this process.
    """
    raw_dir, frames_dir = Path(raw_dir), Path(frames_dir)
    table = manifest if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
    files = sorted(zip(table["path"].astype(str), _column(table, "subject")))
    read = _Reads(reader, max_bytes)
    order = sorted(files, key=lambda item: (read.is_lossy(raw_dir / item[0]), item[0]))
    wanted = set(modalities) if modalities else None
    rules = frames if isinstance(frames, FrameRules) else FrameRules.from_config(frames)
    ids = Pseudonymizer(secret if isinstance(secret, bytes) else load_secret(secret))

    frames_dir.mkdir(parents=True, exist_ok=True)
    seen, rows = _Seen(frames_dir, ids, rules, dataset), []
    with _quiet_readers() as muted:
        for rel, subject_hint in order:
            for row in _extract_file(raw_dir / rel, rel, subject_hint, wanted, seen, read):
                rows.append(row)
    if muted:
        log.info("%d reader warning(s) and log line(s) not shown: they may quote header values such as names", len(muted))
    kinds = Counter(row["kind"] for row in rows)

    index = write_index(rows, index_path)
    if key_map is not None:
        write_key_map(ids.table(), key_map)
    remove_stale(frames_dir, "*.tif", {f"{i}.tif" for i in index.loc[index["status"] == "ok", "image_id"]})
    skipped = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()) if k != "ok") or "none"
    log.info("extracted %d frame(s) from %d file(s); skipped: %s", kinds["ok"], len(files), skipped)
    if reader is not None and reader.started > 1:
        log.info("the reader worker was replaced %d time(s) after a crash or time limit", reader.started - 1)
    return index


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
    """The phase's two reads of a file, in `reader`'s worker process when there is one."""

    reader: IsolatedReader | None
    max_bytes: int

    def is_lossy(self, path: Path) -> bool:
        if self.reader is None:
            return is_lossy(path, max_bytes=self.max_bytes)
        try:
            return bool(self.reader.call(PROBE_TARGET, path, max_bytes=self.max_bytes))
        except ReaderCrashed:
            return False  # as for any unreadable header: reading the file reports it

    def frames(self, path: Path) -> list[Frame]:
        if self.reader is None:
            return read_frames(path, max_bytes=self.max_bytes)
        return self.reader.call(READ_TARGET, path, max_bytes=self.max_bytes)


def _extract_file(
    path: Path, rel: str, subject_hint: str, wanted: set[str] | None, seen: _Seen, read: _Reads
) -> Iterator[dict]:
    """Yield the index row (plus its reason kind under "kind") for every frame of one file; never raises."""
    source = seen.ids.source(rel)
    try:
        frames = read.frames(path)
    except ReaderCrashed as exc:
        yield _unread_row(source, seen.ids.subject(subject_hint), scrub(str(exc), rel, source), "reader crashed")
        return
    except NotAnImageError as exc:
        yield _unread_row(source, seen.ids.subject(subject_hint), scrub(str(exc), rel, source), "not an image")
        return
    except ReadError as exc:
        yield _unread_row(source, seen.ids.subject(subject_hint), scrub(str(exc), rel, source), "unreadable")
        return
    except Exception as exc:  # a reader bug must not stop the run
        log.exception("unexpected %s reading %s", type(exc).__name__, source)
        reason = scrub(f"{source}: unexpected {type(exc).__name__}: {exc}", rel, source)
        yield _unread_row(source, seen.ids.subject(subject_hint), reason, "unreadable")
        return
    for fr in frames:
        subject = seen.ids.subject(subject_hint or fr.subject_id)
        image_id = seen.image_id(subject)
        status, reason, kind = _judge(fr, image_id, source, wanted, seen)
        if status == "ok":
            write_tiff(seen.frames_dir / f"{image_id}.tif", fr.image)
        sky = fr.sky or ("", "", "")
        row = {
            "image_id": image_id,
            "subject_id": subject,
            "series_id": seen.ids.series(fr.series_id),
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
        }
        if status == "ok":
            seen.rows[image_id] = row
        yield row


def _image_type(fr: Frame) -> str:
    text = "\\".join(fr.image_type)
    return f"{text}/{fr.complex_component}" if fr.complex_component else text


def _round(value: float | str) -> str:
    return "" if value == "" else f"{float(value):.6f}"


def _judge(fr: Frame, image_id: str, rel: str, wanted: set[str] | None, seen: _Seen) -> tuple[str, str, str]:
    """(status, reason, reason kind) for one frame; registers kept frames in `seen`.

    `rel` is the source file's pseudonym (reasons name it, never the path).
    """
    is_dicom = fr.meta.get("format") == "dicom"
    if wanted is not None and is_dicom and fr.modality not in wanted:
        return "skipped", f"modality {fr.modality or '(none)'} not in {sorted(wanted)}", "modality"
    refused = seen.rules.refuse(fr) if is_dicom else ""
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

    instance_keys = [(fr.instance_id, fr.frame)] if fr.instance_id else []
    digest = pixel_hash(fr.image)
    for key in instance_keys:
        if key in seen.conflicts:
            why = f"conflict: SOP instance {seen.ids.uid(key[0])} frame {key[1]} has copies with different pixels"
            return "skipped", why, "conflict"
        if key in seen.instances:
            kept = seen.instances[key]
            agree, detail = _agrees(fr, digest, seen.rows[kept], seen)
            if not agree:
                return _conflict(seen, key, kept, rel, detail)
            copy = "lossy copy" if fr.lossy else "another encoding"
            return _duplicate(seen, instance_keys, kept, f"same SOP instance, {copy}{detail}", "same instance")
    for uid in fr.meta.get("predecessors", []):
        if (uid, fr.frame) in seen.instances:
            copy = "lossy re-encoding" if fr.lossy else "re-encoding"
            return _duplicate(
                seen, instance_keys, seen.instances[(uid, fr.frame)], f"{copy} of SOP instance {seen.ids.uid(uid)}", "re-encoding"
            )
    if digest in seen.pixels:
        return _duplicate(seen, instance_keys, seen.pixels[digest], "identical pixels", "identical pixels")

    for key in instance_keys:
        seen.instances[key] = image_id
    seen.pixels[digest] = image_id
    return "ok", "", "ok"


def _agrees(fr: Frame, digest: str, kept_row: dict, seen: _Seen) -> tuple[bool, str]:
    """Whether a second copy of a kept SOP instance frame has the kept copy's pixels (see module doc)."""
    if seen.pixels.get(digest) == kept_row["image_id"]:
        return True, ""
    kept = read_tiff(seen.frames_dir / f"{kept_row['image_id']}.tif")
    if kept.shape != fr.image.shape:
        return False, f"{kept.shape[0]}x{kept.shape[1]} vs {fr.image.shape[0]}x{fr.image.shape[1]}"
    finite = np.isfinite(kept)
    if not np.array_equal(finite, np.isfinite(fr.image)):
        return False, "NaN pixels differ"
    a, b = kept[finite].astype(np.float64), fr.image[finite].astype(np.float64)
    changed = float(np.mean(a != b))
    if not (fr.lossy or kept_row["lossy"]):
        return False, f"both lossless, {changed:.1%} of pixels differ"
    span = float(a.max() - a.min()) or 1.0
    mse = float(np.mean((a - b) ** 2))
    psnr = float("inf") if mse == 0 else 10 * np.log10(span**2 / mse)
    if psnr >= LOSSY_PSNR_DB:
        return True, f", PSNR {psnr:.1f} dB"
    return False, f"PSNR {psnr:.1f} dB < {LOSSY_PSNR_DB:g} dB, {changed:.1%} of pixels differ"


def _conflict(seen: _Seen, key: tuple[str, int], kept: str, rel: str, detail: str) -> tuple[str, str, str]:
    """Skip this copy and the kept one: both decode but disagree, so neither can be trusted."""
    seen.conflicts.add(key)
    row = seen.rows.pop(kept)
    seen.pixels = {d: i for d, i in seen.pixels.items() if i != kept}
    row.update(status="skipped", kind="conflict")
    uid = seen.ids.uid(key[0])
    row["reason"] = f"conflict: SOP instance {uid} frame {key[1]} also in {rel} with different pixels ({detail})"
    why = f"conflict: SOP instance {uid} frame {key[1]} also in {row['source_path']} with different pixels ({detail})"
    return "skipped", why, "conflict"


def _duplicate(
    seen: _Seen, instance_keys: list[tuple[str, int]], kept: str, why: str, kind: str
) -> tuple[str, str, str]:
    """Skip as a duplicate of `kept`; later copies of this instance point at `kept` too."""
    for key in instance_keys:
        seen.instances.setdefault(key, kept)
    return "skipped", f"duplicate of {kept} ({why})", f"duplicate ({kind})"


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
    }


def _column(table: pd.DataFrame, name: str) -> list[str]:
    if name not in table.columns:
        return [""] * len(table)
    return ["" if pd.isna(v) else str(v) for v in table[name]]

