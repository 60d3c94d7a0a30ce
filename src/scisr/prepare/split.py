"""Leakage-free train/val/test split by subject group, with HR/LR pairs written as 16-bit PNGs.

Units of assignment (`scisr.prepare.grouping`): groups of subjects that must not cross splits
(DICOM PatientID; FITS frames of one sky field, by overlapping footprints, OBJECT or pointing);
a group made of a single image whose both sides are >= 2 * tile_size is cut into spatially
disjoint tile_size x tile_size tiles (a grid from the top-left corner, the remainder discarded);
and when fewer units than splits remain, the largest volume is cut into slabs of contiguous
slices with `slab_gap` slices left out between them. Caveat: tiles and slabs of one subject
share the subject, the instrument and the noise, so scores on them measure generalisation
within that subject, not to new subjects; split.tsv says which rule made each unit
(`group_rule`) and which group (`group`) each row belongs to, so the report can count test
images whose group also has training images.
Tiles that are almost all background (less than `min_foreground` of their pixels above
FOREGROUND_LEVEL, e.g. the air around a head in MRI) carry no signal to learn or to score;
they are left out and listed in split.tsv with split "excluded" and the reason (as are slab
gaps and the other series of a volume cut into slabs).
Reproducible across installations: ids are keyed pseudonyms (a per-installation secret), so the
shuffle and the LR noise never follow them; they follow each piece's content (`content_keys`: the
sha256 of its image's pixels and its place in that image), so the same data and seed give the
same split and the same LR images on every machine.

Cross-validation (`folds` k > 1, study.folds): every subject group is one unit (no tiles, no slabs, so
nothing of one group can sit in two folds), and the units go to k folds balanced by pixels
(`assign_folds`, from the content keys). Fold i tests on its own units and trains and validates on the
others, split between train and val by the `fractions` of train and val (`test` is ignored: each fold
tests 1/k). Each piece's HR/LR pair is degraded once and placed in every fold's part (hard links where
the file system allows). split.tsv then has one row per fold and piece (column `fold`); a single
holdout (k = 1) is fold 1.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from scisr.checks import split_problems
from scisr.index import read_index
from scisr.io.files import (
    atomic_path,
    link_or_copy,
    read_tiff,
    remove_stale,
    to_uint16,
    write_png16,
)
from scisr.prepare.assign import SPLITS, assign_folds, assign_units, fold_assignment
from scisr.prepare.degrade import degrade
from scisr.prepare.grouping import Piece, build_units, cut_slabs, largest_volume, tile_grid, too_few_units
from scisr.prepare.normalize import pixel_digest, read_digests
from scisr.prepare.store import StoreWriter, merge_stores, pair_dirs  # pair_dirs: the layout's owner
from scisr.units import unit_of

__all__ = [
    "SPLITS",
    "SPLIT_COLUMNS",
    "Piece",
    "assign_folds",
    "assign_units",
    "pair_dirs",
    "read_split_table",
    "split_dataset",
    "tile_grid",
]

SPLIT_COLUMNS = [
    "id",
    "image_id",
    "subject_id",
    "group",
    "unit",
    "group_rule",
    "fold",
    "split",
    "top",
    "left",
    "rows",
    "cols",
    "reason",
    "key",
]
FOREGROUND_LEVEL = 0.05  # normalized intensity above which a pixel counts as signal, not background


def read_split_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a split.tsv written by `split_dataset` (ids as text, empty reasons as '')."""
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "group" not in table.columns and "subject_id" in table.columns:
        table["group"] = table["subject_id"]  # split tables written before groups: one subject, one group
    if "fold" not in table.columns:
        table["fold"] = "1"  # split tables written before cross-validation: one holdout
    table["fold"] = pd.to_numeric(table["fold"], errors="raise").astype("int64")
    missing = [c for c in ("id", "subject_id", "split") if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; rerun the split phase")
    for column in ("top", "left", "rows", "cols"):
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    return table


def piece_rng(seed: int, piece_id: str) -> np.random.Generator:
    """Generator for one piece's LR noise: reproducible per (seed, id), independent across ids.

    The id enters through zlib.crc32 (stable across runs and machines, unlike Python's hash()).
    """
    return np.random.default_rng([int(seed), zlib.crc32(piece_id.encode("utf-8"))])


def content_keys(
    units: Mapping[str, list[Piece]], norm_dir: Path, known: Mapping[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """({piece id: key}, {unit: key}) from pixel content and position only, never from the (keyed) ids.

    `known` holds images' pixel digests already computed (params.tsv's sha256, `read_digests`); the others are read.
    """
    digests = {}
    for image_id in sorted({p.image_id for pieces in units.values() for p in pieces}):
        if known and image_id in known:
            digests[image_id] = known[image_id]
        else:
            digests[image_id] = pixel_digest(read_tiff(norm_dir / f"{image_id}.tif"))
    pieces: dict[str, str] = {}
    seen: dict[str, int] = {}
    # pieces with identical pixels (one frame stored for two subjects) are told apart by their order among
    # themselves, so each still gets its own LR noise
    for piece in sorted((p for unit in units.values() for p in unit), key=lambda p: p.id):
        key = f"{digests[piece.image_id]}:{piece.top}:{piece.left}:{piece.rows}:{piece.cols}"
        seen[key] = seen.get(key, 0) + 1
        pieces[piece.id] = key if seen[key] == 1 else f"{key}#{seen[key]}"
    unit_keys = {
        name: hashlib.sha256("\n".join(sorted(pieces[p.id] for p in unit)).encode()).hexdigest()
        for name, unit in units.items()
    }
    return pieces, unit_keys


def _background_tiles(
    units: dict[str, list[Piece]], norm_dir: Path, min_foreground: float
) -> dict[str, tuple[Piece, str]]:
    """Tile units whose share of signal pixels is below `min_foreground`, with the reason."""
    excluded: dict[str, tuple[Piece, str]] = {}
    if min_foreground <= 0:
        return excluded
    tiles = sorted((p for unit in units.values() for p in unit if p.group_rule == "tile"), key=lambda p: p.image_id)
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
    part_dirs: Mapping[int, Mapping[str, str | os.PathLike]] | Mapping[str, str | os.PathLike],
    split_tsv: str | os.PathLike,
    *,
    scale: int,
    fractions: Mapping[str, float],
    seed: int,
    tile_size: int | None,
    degradation: str,
    degradation_options: Mapping | None,
    min_foreground: float,
    slab_gap: int,
    pointing_tolerance: float,
    dataset: str = "",
    store_dir: str | os.PathLike | None = None,
    params_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """The whole phase in one process: split normalized images by subject group into the `part_dirs`, write HR/LR
    16-bit PNGs into each part's `pair_dirs`, and split.tsv; with `store_dir`, also every pair once into a training
    store there (scisr.prepare.store: the same 16-bit pixels, read a patch at a time by training).

    `part_dirs` is {fold: {train, val, test: folder}} for folds 1..k (k > 1: cross-validation, module doc), or
    {train, val, test: folder} for a single holdout (fold 1). `slab_gap` (slice positions between slabs) and
    `pointing_tolerance` (degrees) are the grouping settings of `scisr.prepare.grouping`; `dataset` names the
    config block in errors; `params_path` (params.tsv) saves reading pixels for their digests (`plan_split`). The
    workflow runs the same three steps as jobs: `plan_split`, a `degrade_unit` per
    work unit, `gather_split`.
    """
    folds = _fold_parts(part_dirs)
    table = plan_split(
        index_path,
        norm_dir,
        split_tsv,
        folds=len(folds),
        scale=scale,
        fractions=fractions,
        seed=seed,
        tile_size=tile_size,
        min_foreground=min_foreground,
        slab_gap=slab_gap,
        pointing_tolerance=pointing_tolerance,
        dataset=dataset,
        params_path=params_path,
    )
    work_root = Path(split_tsv).parent
    with tempfile.TemporaryDirectory(dir=work_root, prefix=".split-") as work:
        work = Path(work)
        unit_store = work / "store" if store_dir is not None else None
        degrade_unit(
            split_tsv,
            norm_dir,
            work / "pairs",
            scale=scale,
            seed=seed,
            degradation=degradation,
            degradation_options=degradation_options,
            store_dir=unit_store,
        )
        gather_split(split_tsv, [(work / "pairs", unit_store)], part_dirs, store_dir=store_dir)
    return table


def plan_split(
    index_path: str | os.PathLike,
    norm_dir: str | os.PathLike,
    split_tsv: str | os.PathLike,
    *,
    folds: int,
    scale: int,
    fractions: Mapping[str, float],
    seed: int,
    tile_size: int | None,
    min_foreground: float,
    slab_gap: int,
    pointing_tolerance: float,
    dataset: str = "",
    params_path: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Group, cut and assign every normalized image (a single holdout when `folds` is 1, else k folds) and write
    split.tsv: one row per fold and piece, with its content key (which seeds its LR noise); return the table.

    With `params_path` (the normalize phase's params.tsv) the images' pixel digests come from there, so the plan
    reads only the images' headers (and the pixels of lone images it tiles, to leave background tiles out)."""
    norm_dir = Path(norm_dir)
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
    if slab_gap < 0:
        raise ValueError(f"slab_gap must be >= 0, got {slab_gap}")
    left_out: list[tuple[Piece, str]] = []
    if folds == 1:
        units = build_units(images, shapes, tile_size, pointing_tolerance)
        excluded = _background_tiles(units, norm_dir, min_foreground)
        units = {name: pieces for name, pieces in units.items() if name not in excluded}
        left_out += excluded.values()
        volume = largest_volume(units, images) if 0 < len(units) < len(SPLITS) else None
        if volume is not None:
            count = len(SPLITS) - len(units) + 1
            if len(volume.positions) >= count + (count - 1) * slab_gap:
                units, gaps = cut_slabs(units, volume, count, slab_gap, fractions)
                left_out += gaps
        if len(units) < len(SPLITS):
            raise ValueError(
                too_few_units(norm_dir, dataset, units, volume, excluded, shapes, tile_size, slab_gap, min_foreground)
            )
    else:
        units = build_units(images, shapes, None, pointing_tolerance)  # whole groups: nothing crosses folds
    areas = {name: sum(p.rows * p.cols for p in pieces) for name, pieces in units.items()}
    piece_keys, unit_keys = content_keys(units, norm_dir, read_digests(params_path) if params_path else None)
    if folds == 1:
        assignment = {1: assign_units(areas, fractions, seed, unit_keys)}
    else:
        where = f"datasets.{dataset}" if dataset else str(norm_dir)
        assignment = fold_assignment(areas, folds, fractions, seed, unit_keys, where)
    pieces = [p for unit in units.values() for p in unit]
    records = [
        {
            **asdict(piece),
            "fold": fold,
            "split": assignment[fold][piece.unit],
            "reason": "",
            "key": piece_keys[piece.id],
        }
        for piece in pieces
        for fold in range(1, folds + 1)
    ]
    records += [
        {**asdict(piece), "fold": fold, "split": "excluded", "reason": reason, "key": ""}
        for fold in range(1, folds + 1)
        for piece, reason in left_out
    ]
    table = pd.DataFrame(records, columns=SPLIT_COLUMNS).sort_values(["fold", "id"], ignore_index=True)
    with atomic_path(split_tsv) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table


def _pieces(table: pd.DataFrame) -> pd.DataFrame:
    """Each piece that gets a pair once (split.tsv has a row per fold), ordered by image so each is read once."""
    pieces = table[table["split"] != "excluded"].drop_duplicates("id")
    return pieces.sort_values(["image_id", "id"], ignore_index=True)


def degrade_unit(
    split_tsv: str | os.PathLike,
    norm_dir: str | os.PathLike,
    pairs_dir: str | os.PathLike,
    *,
    scale: int,
    seed: int,
    degradation: str,
    degradation_options: Mapping | None,
    unit: int = 1,
    units: int = 1,
    store_dir: str | os.PathLike | None = None,
) -> int:
    """Write the HR/LR 16-bit PNG pair of every piece of work unit `unit` (its subject group's,
    `scisr.units.unit_of`) into `pair_dirs(pairs_dir)`, and into a training store at `store_dir` when given;
    return the number of pairs. Each piece's LR noise follows its content key, so units change nothing."""
    if not 1 <= unit <= units:
        raise ValueError(f"unit {unit} is not one of 1..{units}")
    norm_dir = Path(norm_dir)
    pieces = _pieces(read_split_table(split_tsv))
    pieces = pieces[[unit_of(group, units) == unit for group in pieces["group"]]]
    hr_dir, lr_dir = pair_dirs(pairs_dir)
    hr_dir.mkdir(parents=True, exist_ok=True)
    lr_dir.mkdir(parents=True, exist_ok=True)
    store = StoreWriter(store_dir) if store_dir is not None else None
    written = set()
    try:
        cache_id, cache = None, None
        for piece in pieces.itertuples():
            if piece.image_id != cache_id:
                cache_id, cache = piece.image_id, read_tiff(norm_dir / f"{piece.image_id}.tif")
            hr = cache[piece.top : piece.top + piece.rows, piece.left : piece.left + piece.cols]
            options = dict(degradation_options or {})
            lr = degrade(hr, scale, degradation, rng=piece_rng(seed, piece.key), **options)
            hr, lr = to_uint16(hr), to_uint16(lr)  # the PNGs' pixels, and the store's
            name = f"{piece.id}.png"
            write_png16(hr_dir / name, hr)
            write_png16(lr_dir / name, lr)
            written.add(name)
            if store is not None:
                store.add(name, hr, lr)
    except BaseException:
        if store is not None:
            store.abort()
        raise
    if store is not None:
        store.close(scale)
    for folder in (hr_dir, lr_dir):
        remove_stale(folder, "*.png", written)
    return len(written)


def gather_split(
    split_tsv: str | os.PathLike,
    units: Sequence[tuple[str | os.PathLike, str | os.PathLike | None]],
    part_dirs: Mapping[int, Mapping[str, str | os.PathLike]] | Mapping[str, str | os.PathLike],
    *,
    store_dir: str | os.PathLike | None = None,
) -> None:
    """Place every pair of the work `units` ((pairs folder, store folder) in unit order) in its folds' parts (hard
    links where the file system allows), and join the units' training stores into `store_dir`."""
    folds = _fold_parts(part_dirs)
    table = read_split_table(split_tsv)
    planned = sorted(set(table["fold"]))
    if planned and planned != sorted(folds):
        raise ValueError(f"{split_tsv} plans folds {planned}, the parts are for {sorted(folds)}; rerun the split")
    folders = {(fold, split): pair_dirs(path) for fold, parts in folds.items() for split, path in parts.items()}
    written = {folder: set() for pair in folders.values() for folder in pair}
    for row in table[table["split"] != "excluded"].itertuples():
        source_hr, source_lr = pair_dirs(units[unit_of(row.group, len(units)) - 1][0])
        hr_dir, lr_dir = folders[(row.fold, row.split)]
        name = f"{row.id}.png"
        link_or_copy(source_hr / name, hr_dir / name)
        link_or_copy(source_lr / name, lr_dir / name)
        written[hr_dir].add(name)
        written[lr_dir].add(name)
    for folder, keep in written.items():
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale(folder, "*.png", keep)
    if store_dir is not None:
        merge_stores([store for _, store in units], store_dir)


def _fold_parts(
    part_dirs: Mapping[int, Mapping[str, str | os.PathLike]] | Mapping[str, str | os.PathLike],
) -> dict[int, dict[str, str | os.PathLike]]:
    """{fold: {train, val, test: folder}} for folds 1..k, from either form `split_dataset` takes."""
    if set(part_dirs) == set(SPLITS):
        return {1: dict(part_dirs)}  # type: ignore[arg-type]
    folds = sorted(int(fold) for fold in part_dirs)
    if not folds or folds != list(range(1, len(folds) + 1)):
        raise ValueError(
            f"part_dirs must name train, val and test, or folds 1..k; got {', '.join(map(str, part_dirs))}"
        )
    out = {}
    for fold in folds:
        parts = dict(part_dirs[fold] if fold in part_dirs else part_dirs[str(fold)])  # type: ignore[index]
        if set(parts) != set(SPLITS):
            raise ValueError(f"part_dirs of fold {fold} must name exactly {', '.join(SPLITS)}; got {', '.join(parts)}")
        out[fold] = parts
    return out
