"""Units of the split: subjects joined into groups that must not cross splits, tiles and slabs.

Groups (union-find over subjects; a group is named by its smallest subject id):
- one subject is one group: DICOM PatientID (rule "patient"; "study" when only a
  StudyInstanceUID names it), FITS OBJECT ("object"), a source's subject ("source"), or one
  file ("file");
- FITS frames whose sky footprints overlap join their subjects ("sky-field"): centres closer
  than the sum of the footprint radii (`scisr.io.sky`; the circles hold the footprints, so an
  overlap is never missed);
- frames whose pointings (centres) lie within `pointing_tolerance` degrees join ("pointing"),
  which also catches headers with a pointing but no WCS (radius 0).
Units:
- a group made of one 2-D image with both sides >= 2 * tile_size becomes tiles ("tile");
- otherwise a group is one unit (its group rule);
- when fewer units than splits remain, the largest volume (the series with the most distinct
  DICOM slice positions) is cut along its normal into contiguous slabs ("slab") with
  `slab_gap` slice positions left out between neighbouring slabs, so no slice and no pair of
  adjacent slices straddles a split boundary; its other series would overlap every slab and are
  left out. One slab per missing unit: three sized by the split fractions when it is the only
  unit, else equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

N_SPLITS = 3
_SUBJECT_RULES = {"patient", "study", "object", "source", "file"}


@dataclass(frozen=True)
class Piece:
    """One HR image or tile: where it comes from, its group and unit, and its id in the output folders."""

    id: str
    image_id: str
    subject_id: str
    group: str
    unit: str
    group_rule: str
    top: int
    left: int
    rows: int
    cols: int


def angular_distance(ra1: float, dec1: float, ra2: np.ndarray | float, dec2: np.ndarray | float) -> np.ndarray:
    """Great-circle distance in degrees (Vincenty's formula, stable at every distance)."""
    ra1, dec1, ra2, dec2 = (np.radians(np.asarray(v, dtype=np.float64)) for v in (ra1, dec1, ra2, dec2))
    d_ra = ra2 - ra1
    num = np.hypot(
        np.cos(dec2) * np.sin(d_ra), np.cos(dec1) * np.sin(dec2) - np.sin(dec1) * np.cos(dec2) * np.cos(d_ra)
    )
    den = np.sin(dec1) * np.sin(dec2) + np.cos(dec1) * np.cos(dec2) * np.cos(d_ra)
    return np.degrees(np.arctan2(num, den))


class _UnionFind:
    def __init__(self, names: list[str]) -> None:
        self.parent = {n: n for n in names}

    def find(self, name: str) -> str:
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name

    def union(self, a: str, b: str) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[max(ra, rb)] = min(ra, rb)
        return True


def _floats(images: pd.DataFrame, column: str) -> np.ndarray:
    if column not in images.columns:
        return np.full(len(images), np.nan)
    return pd.to_numeric(images[column], errors="coerce").to_numpy(dtype=np.float64)


def subject_groups(images: pd.DataFrame, pointing_tolerance: float) -> tuple[dict[str, str], dict[str, str]]:
    """(subject -> group, group -> rule) for index rows with subject_id and optional sky columns."""
    subjects = sorted(set(images["subject_id"]))
    uf = _UnionFind(subjects)
    edges: dict[str, set[str]] = {}
    ra, dec, radius = (_floats(images, c) for c in ("sky_ra", "sky_dec", "sky_radius"))
    has_sky = np.isfinite(ra) & np.isfinite(dec)
    sky_subjects = images["subject_id"].to_numpy()[has_sky]
    ra, dec, radius = ra[has_sky], dec[has_sky], np.nan_to_num(radius[has_sky])
    for i in range(len(ra) - 1):
        distance = angular_distance(ra[i], dec[i], ra[i + 1 :], dec[i + 1 :])
        overlap = distance < radius[i] + radius[i + 1 :]
        near = distance <= pointing_tolerance
        for offset in np.flatnonzero(overlap | near):
            j = i + 1 + offset
            if sky_subjects[i] != sky_subjects[j]:
                uf.union(sky_subjects[i], sky_subjects[j])
                rule = "sky-field" if overlap[offset] else "pointing"
                edges.setdefault(sky_subjects[i], set()).add(rule)
    rules_by_subject = {}
    if "subject_rule" in images.columns:
        rules_by_subject = dict(zip(images["subject_id"], images["subject_rule"]))
    group_of = {s: uf.find(s) for s in subjects}
    members: dict[str, list[str]] = {}
    for subject, group in group_of.items():
        members.setdefault(group, []).append(subject)
    rule_of = {}
    for group, names in members.items():
        joined = set().union(*(edges.get(n, set()) for n in names))
        if len(names) > 1:
            rule_of[group] = "sky-field" if "sky-field" in joined else "pointing"
        else:
            rule = rules_by_subject.get(names[0], "")
            rule_of[group] = rule if rule in _SUBJECT_RULES else "file"
    return group_of, rule_of


def build_units(
    images: pd.DataFrame,
    shapes: Mapping[str, tuple[int, int]],
    tile_size: int | None,
    pointing_tolerance: float,
) -> dict[str, list[Piece]]:
    """Units before slab cutting: tiles of lone big images, else one unit per group (module doc)."""
    group_of, rule_of = subject_groups(images, pointing_tolerance)
    images = images.assign(group=images["subject_id"].map(group_of))
    units: dict[str, list[Piece]] = {}
    for group, rows in images.groupby("group", sort=True):
        ids = sorted(rows["image_id"])
        subject_of = dict(zip(rows["image_id"], rows["subject_id"]))
        r, c = shapes[ids[0]]
        if tile_size and len(ids) == 1 and min(r, c) >= 2 * tile_size:
            for gr, gc, top, left in tile_grid(r, c, tile_size):
                piece_id = f"{ids[0]}_t{gr:02d}{gc:02d}"
                units[piece_id] = [
                    Piece(
                        piece_id, ids[0], subject_of[ids[0]], group, piece_id, "tile", top, left, tile_size, tile_size
                    )
                ]
        else:
            units[group] = [Piece(i, i, subject_of[i], group, group, rule_of[group], 0, 0, *shapes[i]) for i in ids]
    return units


def tile_grid(rows: int, cols: int, tile_size: int) -> list[tuple[int, int, int, int]]:
    """Disjoint (grid_row, grid_col, top, left) tiles covering a rows x cols image from its corner."""
    return [(r, c, r * tile_size, c * tile_size) for r in range(rows // tile_size) for c in range(cols // tile_size)]


@dataclass(frozen=True)
class Volume:
    """The series of a unit with the most distinct slice positions: its positions and slices."""

    unit: str
    series: str
    positions: list[float]
    position_of: dict[str, float]


def largest_volume(units: Mapping[str, list[Piece]], images: pd.DataFrame) -> Volume | None:
    """The non-tile unit series with the most distinct slice positions (at least 2), or None."""
    position = dict(zip(images["image_id"], _floats(images, "slice_position")))
    series = dict(zip(images["image_id"], images["series_id"] if "series_id" in images.columns else [""] * len(images)))
    best: Volume | None = None
    for name, pieces in sorted(units.items()):
        if pieces[0].group_rule == "tile":
            continue
        by_series: dict[str, dict[str, float]] = {}
        for piece in pieces:
            if np.isfinite(position[piece.image_id]):
                by_series.setdefault(series[piece.image_id], {})[piece.image_id] = round(position[piece.image_id], 2)
        for sid, where in sorted(by_series.items()):
            distinct = sorted(set(where.values()))
            if len(distinct) >= 2 and (best is None or len(distinct) > len(best.positions)):
                best = Volume(name, sid, distinct, where)
    return best


def slab_sizes(usable: int, count: int, fractions: Mapping[str, float] | None) -> list[int]:
    """Slab lengths (>= 1 each) summing to `usable`: by `fractions` (train, val, test order) or equal."""
    weights = np.array([fractions[s] for s in ("train", "val", "test")] if fractions else [1.0] * count)
    raw = usable * weights / weights.sum()
    sizes = np.maximum(np.floor(raw).astype(int), 1)
    while sizes.sum() < usable:
        sizes[int(np.argmax(raw - sizes))] += 1
    while sizes.sum() > usable:
        sizes[int(np.argmax(sizes))] -= 1
    return [int(s) for s in sizes]


def cut_slabs(
    units: dict[str, list[Piece]], volume: Volume, count: int, gap: int, fractions: Mapping[str, float] | None
) -> tuple[dict[str, list[Piece]], list[tuple[Piece, str]]]:
    """Replace `volume.unit` by `count` slabs; return the new units and the pieces left out, with reasons."""
    usable = len(volume.positions) - (count - 1) * gap
    sizes = slab_sizes(usable, count, fractions if count == N_SPLITS else None)
    slab_of: dict[float, int] = {}
    start = 0
    for k, size in enumerate(sizes):
        for pos in volume.positions[start : start + size]:
            slab_of[pos] = k
        start += size + gap
    out = {name: pieces for name, pieces in units.items() if name != volume.unit}
    left_out = []
    for piece in units[volume.unit]:
        pos = volume.position_of.get(piece.image_id)
        if pos is None:
            left_out.append((piece, "another series of a subject cut into slabs: it would overlap every slab"))
        elif pos not in slab_of:
            left_out.append((piece, f"slab gap: slice at {pos:g} mm lies between two slabs (split.slab_gap {gap})"))
        else:
            name = f"{piece.group}-slab{slab_of[pos]}"
            slab = Piece(
                piece.id, piece.image_id, piece.subject_id, piece.group, name, "slab", 0, 0, piece.rows, piece.cols
            )
            out.setdefault(name, []).append(slab)
    return out, left_out


def too_few_units(
    norm_dir: Path,
    dataset: str,
    units: Mapping[str, list[Piece]],
    volume: object,
    excluded: Mapping[str, tuple[Piece, str]],
    shapes: Mapping[str, tuple[int, int]],
    tile_size: int | None,
    slab_gap: int,
    min_foreground: float,
) -> str:
    """The error for fewer units than splits, naming the settings that would help here."""
    key = f"datasets.{dataset or '<name>'}.split"
    hints = []
    if volume is not None:
        count = N_SPLITS - len(units) + 1
        hints.append(
            f"lower {key}.slab_gap (now {slab_gap}): the largest series has {len(volume.positions)} slice "
            f"positions, {count} slabs need {count} + {count - 1} x slab_gap"
        )
    lone = [shapes[p.image_id] for pieces in units.values() if len(pieces) == 1 for p in pieces]
    if tile_size and lone:
        rows, cols = max(lone, key=min)
        hints.append(
            f"lower {key}.tile_size (now {tile_size}): a lone image is tiled when both sides are >= 2 x tile_size, "
            f"the largest here is {rows}x{cols}"
        )
    if excluded:
        hints.append(
            f"lower {key}.min_foreground (now {min_foreground}): {len(excluded)} tile(s) were left out as background"
        )
    hints.append("or add subjects (another PatientID, another sky field)")
    return (
        f"{norm_dir}: only {len(units)} unit(s) (subject groups, tiles or slabs) to split; train, val and test "
        f"need at least {N_SPLITS}: " + "; ".join(hints)
    )
