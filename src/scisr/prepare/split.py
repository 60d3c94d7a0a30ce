"""Leakage-free train/val/test split by subject, with HR/LR pairs written as 16-bit PNGs.

Units of assignment are subjects: all frames and series of one subject land in one split.
Exception: a subject made of a single image whose both sides are >= 2 * tile_size is cut into
spatially disjoint tile_size x tile_size tiles (a grid from the top-left corner, the remainder
discarded), and each tile is its own unit. Caveat: tiles of one image share the object, the
instrument and the noise, so scores on such tiles measure generalisation within that image, not
to new subjects; the split table says which rows are tiles (unit != subject_id).
Tiles that are almost all background (less than `min_foreground` of their pixels above
FOREGROUND_LEVEL, e.g. the air around a head in MRI) carry no signal to learn or to score;
they are left out and listed in split.tsv with split "excluded" and the reason.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from scisr.checks import split_problems
from scisr.index import read_index
from scisr.io.files import atomic_path, read_tiff, remove_stale, write_png16
from scisr.prepare.degrade import degrade

SPLITS = ("train", "val", "test")
HR_DIR, LR_DIR = "HR", "LR"  # the two folders of a split part: the layout's one owner is `pair_dirs`
SPLIT_COLUMNS = ["id", "image_id", "subject_id", "unit", "split", "top", "left", "rows", "cols", "reason"]
FOREGROUND_LEVEL = 0.05  # normalized intensity above which a pixel counts as signal, not background


@dataclass(frozen=True)
class Piece:
    """One HR image or tile: where it comes from and its id in the output folders."""

    id: str
    image_id: str
    subject_id: str
    unit: str
    top: int
    left: int
    rows: int
    cols: int


def read_split_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a split.tsv written by `split_dataset` (ids as text, empty reasons as '')."""
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in ("id", "subject_id", "split") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; rerun the split phase")
    for column in ("top", "left", "rows", "cols"):
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    return table


def pair_dirs(part_dir: str | os.PathLike) -> tuple[Path, Path]:
    """The (HR, LR) image folders of one split part (`<split>/train`, `val` or `test`), same names in each."""
    part_dir = Path(part_dir)
    return part_dir / HR_DIR, part_dir / LR_DIR


def tile_grid(rows: int, cols: int, tile_size: int) -> list[tuple[int, int, int, int]]:
    """Disjoint (grid_row, grid_col, top, left) tiles covering a rows x cols image from its corner."""
    return [
        (r, c, r * tile_size, c * tile_size)
        for r in range(rows // tile_size)
        for c in range(cols // tile_size)
    ]


def _pieces(
    images: pd.DataFrame, shapes: dict[str, tuple[int, int]], tile_size: int | None
) -> dict[str, list[Piece]]:
    """Group images into units: one per subject, or one per tile for a lone big image."""
    units: dict[str, list[Piece]] = {}
    for subject_id, group in images.groupby("subject_id", sort=True):
        ids = sorted(group["image_id"])
        rows, cols = shapes[ids[0]]
        if tile_size and len(ids) == 1 and min(rows, cols) >= 2 * tile_size:
            for r, c, top, left in tile_grid(rows, cols, tile_size):
                piece_id = f"{ids[0]}_t{r:02d}{c:02d}"
                units[piece_id] = [
                    Piece(piece_id, ids[0], subject_id, piece_id, top, left, tile_size, tile_size)
                ]
        else:
            units[subject_id] = [
                Piece(image_id, image_id, subject_id, subject_id, 0, 0, *shapes[image_id])
                for image_id in ids
            ]
    return units


def piece_rng(seed: int, piece_id: str) -> np.random.Generator:
    """Generator for one piece's LR noise: reproducible per (seed, id), independent across ids.

    The id enters through zlib.crc32 (stable across runs and machines, unlike Python's hash()).
    """
    return np.random.default_rng([int(seed), zlib.crc32(piece_id.encode("utf-8"))])


def assign_units(
    areas: Mapping[str, int], fractions: Mapping[str, float], seed: int
) -> dict[str, str]:
    """Shuffle units with `seed` and give each to the split furthest below its pixel-area target."""
    problems = split_problems(fractions, None, 1)
    if problems:
        raise ValueError("; ".join(problems))
    fractions = {name: float(fractions[name]) for name in SPLITS}
    names = sorted(areas)
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    total = float(sum(areas.values()))
    filled = dict.fromkeys(SPLITS, 0.0)
    assignment: dict[str, str] = {}
    for name in order:
        # the largest deficit wins; ties go to test, then val, then train
        split = max(reversed(SPLITS), key=lambda s: fractions[s] * total - filled[s])
        assignment[name] = split
        filled[split] += areas[name]
    # every split gets at least one unit: take the smallest unit of the split holding the most
    for split in SPLITS:
        if split not in assignment.values():
            members = {s: [n for n in order if assignment[n] == s] for s in SPLITS}
            donor = max(SPLITS, key=lambda s: len(members[s]))
            moved = min(members[donor], key=lambda n: areas[n])
            assignment[moved] = split
    return assignment


def _background_tiles(
    units: dict[str, list[Piece]], norm_dir: Path, min_foreground: float
) -> dict[str, tuple[Piece, str]]:
    """Tile units whose share of signal pixels is below `min_foreground`, with the reason."""
    excluded: dict[str, tuple[Piece, str]] = {}
    if min_foreground <= 0:
        return excluded
    tiles = sorted((p for unit in units.values() for p in unit if p.unit != p.subject_id), key=lambda p: p.image_id)
    cache_id, cache = None, None
    for piece in tiles:
        if piece.image_id != cache_id:
            cache_id, cache = piece.image_id, read_tiff(norm_dir / f"{piece.image_id}.tif")
        tile = cache[piece.top : piece.top + piece.rows, piece.left : piece.left + piece.cols]
        share = float((tile > FOREGROUND_LEVEL).mean())
        if share < min_foreground:
            excluded[piece.unit] = (piece, f"background tile: {share:.1%} of pixels above {FOREGROUND_LEVEL}")
    return excluded


def split_dataset(
    index_path: str | os.PathLike,
    norm_dir: str | os.PathLike,
    part_dirs: Mapping[str, str | os.PathLike],
    split_tsv: str | os.PathLike,
    *,
    scale: int,
    fractions: Mapping[str, float],
    seed: int,
    tile_size: int | None,
    degradation: str = "bicubic",
    degradation_options: Mapping | None = None,
    min_foreground: float = 0.0,
) -> pd.DataFrame:
    """Split normalized images by subject into the `part_dirs` {train, val, test: folder}; write HR/LR 16-bit
    PNGs into each part's `pair_dirs`, and split.tsv."""
    norm_dir = Path(norm_dir)
    if set(part_dirs) != set(SPLITS):
        raise ValueError(f"part_dirs must name exactly {', '.join(SPLITS)}; got {', '.join(part_dirs)}")
    problems = split_problems(fractions, tile_size, scale)
    if problems:
        raise ValueError(f"split of {norm_dir}: " + "; ".join(problems))
    index = read_index(index_path)
    index = index[index["status"] == "ok"]
    present = index["image_id"].map(lambda i: (norm_dir / f"{i}.tif").exists())
    images = index[present]
    shapes = {}
    for image_id in images["image_id"]:
        with tifffile.TiffFile(norm_dir / f"{image_id}.tif") as tif:
            shapes[image_id] = tuple(int(n) for n in tif.pages[0].shape[:2])
        if shapes[image_id][0] % scale or shapes[image_id][1] % scale:
            raise ValueError(
                f"{norm_dir / image_id}.tif: {shapes[image_id]} is not a multiple of the scale {scale}; "
                "rerun normalize with the same scale"
            )
    units = _pieces(images, shapes, tile_size)
    excluded = _background_tiles(units, norm_dir, min_foreground)
    units = {name: pieces for name, pieces in units.items() if name not in excluded}
    if len(units) < 3:
        raise ValueError(
            f"{norm_dir}: only {len(units)} unit(s) (subjects or tiles) to split; train, val and test "
            "need at least 3 - add subjects or lower tile_size"
        )
    areas = {name: sum(p.rows * p.cols for p in pieces) for name, pieces in units.items()}
    assignment = assign_units(areas, fractions, seed)

    folders = {split: pair_dirs(part_dirs[split]) for split in SPLITS}
    written = {folder: set() for pair in folders.values() for folder in pair}
    records = []
    pieces = sorted((p for unit in units.values() for p in unit), key=lambda p: (p.image_id, p.id))
    cache_id, cache = None, None
    for piece in pieces:
        if piece.image_id != cache_id:
            cache_id, cache = piece.image_id, read_tiff(norm_dir / f"{piece.image_id}.tif")
        hr = cache[piece.top : piece.top + piece.rows, piece.left : piece.left + piece.cols]
        options = dict(degradation_options or {})
        lr = degrade(hr, scale, degradation, rng=piece_rng(seed, piece.id), **options)
        split = assignment[piece.unit]
        name = f"{piece.id}.png"
        hr_dir, lr_dir = folders[split]
        write_png16(hr_dir / name, hr)
        write_png16(lr_dir / name, lr)
        written[hr_dir].add(name)
        written[lr_dir].add(name)
        records.append({**asdict(piece), "split": split, "reason": ""})
    for folder, keep in written.items():
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale(folder, "*.png", keep)
    records += [{**asdict(piece), "split": "excluded", "reason": reason} for piece, reason in excluded.values()]
    table = pd.DataFrame(records, columns=SPLIT_COLUMNS).sort_values("id", ignore_index=True)
    with atomic_path(split_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table
