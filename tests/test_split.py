"""Leakage-free splitting, tiling of lone big images, HR/LR pairs (degradations: test_degrade.py)."""

import numpy as np
import pandas as pd
import pytest
from conftest import dataset_settings
from PIL import Image

from scisr.index import INDEX_COLUMNS, write_index
from scisr.io.files import read_png16, write_tiff
from scisr.prepare.split import SPLIT_COLUMNS, assign_units, read_split_table, split_dataset, tile_grid

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}

# the split settings other than fractions and tile size, at the schema's defaults (the rule passes them all)
DEGRADE = {k: v for k, v in dataset_settings("split").items() if k not in ("fractions", "tile_size")}


def index_rows(rows: list[dict], path) -> None:
    """Write index.tsv through the real writer; unnamed columns empty (frame, rows, cols 0)."""
    defaults = dict.fromkeys(INDEX_COLUMNS, "") | {"frame": 0, "rows": 0, "cols": 0}
    write_index([defaults | row for row in rows], path)


def _dataset(root, n_subjects=8, big=(96, 136)):
    """Subjects with 1-3 small frames each, plus one subject made of one big image."""
    rng = np.random.default_rng(0)
    norm = root / "norm"
    rows = []
    for s in range(n_subjects):
        for f in range(1 + s % 3):
            image_id = f"sub{s}_f{f}"
            write_tiff(norm / f"{image_id}.tif", rng.random((24 + 4 * (s % 2), 32)))
            rows.append({"image_id": image_id, "subject_id": f"sub{s}", "status": "ok"})
    write_tiff(norm / "big.tif", rng.random(big))
    rows.append({"image_id": "big", "subject_id": "bigsubject", "status": "ok"})
    rows.append({"image_id": "failed", "subject_id": "sub0", "status": "failed"})
    rows.append({"image_id": "not_normalized", "subject_id": "sub1", "status": "ok"})
    index_rows(rows, root / "index.tsv")
    return norm


def parts(folder):
    """The split rule's three output folders."""
    return {split: folder / split for split in ("train", "val", "test")}


def _run(root, norm, seed=0, tile_size=32, out="split"):
    return split_dataset(
        root / "index.tsv",
        norm,
        parts(root / out),
        root / f"{out}.tsv",
        scale=4,
        fractions=FRACTIONS,
        seed=seed,
        tile_size=tile_size,
        **DEGRADE,
    )


def test_split_outputs(tmp_path):
    norm = _dataset(tmp_path)
    (tmp_path / "split" / "val" / "HR").mkdir(parents=True)
    (tmp_path / "split" / "val" / "HR" / "stale.png").write_bytes(b"x")
    table = _run(tmp_path, norm)
    saved = pd.read_csv(tmp_path / "split.tsv", sep="\t", dtype={"id": str, "image_id": str})
    assert list(saved.columns) == SPLIT_COLUMNS
    assert SPLIT_COLUMNS[:4] == ["id", "image_id", "subject_id", "group"] and "group_rule" in SPLIT_COLUMNS
    assert len(saved) == len(table)
    assert "not_normalized" not in set(table["image_id"]) and "failed" not in set(table["image_id"])
    # no subject in two splits, except the tiled big image
    untiled = table[table["image_id"] != "big"]
    assert untiled.groupby("subject_id")["split"].nunique().max() == 1
    assert set(table["split"]) == {"train", "val", "test"}
    # tiles: 3 x 4 grid of 32 px, disjoint and within the 96 x 136 image
    tiles = table[table["image_id"] == "big"]
    assert len(tiles) == 12 and set(tiles["unit"]) == set(tiles["id"]) and (tiles["group_rule"] == "tile").all()
    assert (table.loc[table["image_id"] != "big", "group_rule"] == "file").all()
    assert (table["group"] == table["subject_id"]).all()  # no sky, so every group is one subject
    assert "big_t0203" in set(tiles["id"])
    mask = np.zeros((96, 136), dtype=int)
    for t in tiles.itertuples():
        assert t.rows == t.cols == 32 and t.top + t.rows <= 96 and t.left + t.cols <= 136
        mask[t.top : t.top + t.rows, t.left : t.left + t.cols] += 1
    assert mask.max() == 1
    # files: 16-bit PNGs, LR exactly HR / 4, stale ones removed
    assert not (tmp_path / "split" / "val" / "HR" / "stale.png").exists()
    for t in table.itertuples():
        hr_path = tmp_path / "split" / t.split / "HR" / f"{t.id}.png"
        lr_path = tmp_path / "split" / t.split / "LR" / f"{t.id}.png"
        with Image.open(hr_path) as im:
            assert im.mode.startswith("I;16")
        hr, lr = read_png16(hr_path), read_png16(lr_path)
        assert hr.shape == (t.rows, t.cols) and lr.shape == (t.rows // 4, t.cols // 4)
    for split in ("train", "val", "test"):
        names = {p.stem for p in (tmp_path / "split" / split / "HR").glob("*.png")}
        assert names == set(table.loc[table["split"] == split, "id"])


def test_background_tiles_are_excluded_and_listed(tmp_path):
    norm = _dataset(tmp_path)
    big = np.zeros((96, 136), dtype=np.float32)  # air around an object: only the centre has signal
    big[32:64, 32:96] = np.random.default_rng(1).random((32, 64)) * 0.5 + 0.5
    write_tiff(norm / "big.tif", big)
    table = split_dataset(
        tmp_path / "index.tsv",
        norm,
        parts(tmp_path / "split"),
        tmp_path / "split.tsv",
        scale=4,
        fractions=FRACTIONS,
        seed=0,
        tile_size=32,
        **(DEGRADE | {"min_foreground": 0.5}),
    )
    tiles = table[table["image_id"] == "big"].set_index("id")
    kept = set(tiles.index[tiles["split"] != "excluded"])
    assert kept == {"big_t0101", "big_t0102"}
    excluded = tiles[tiles["split"] == "excluded"]
    assert len(excluded) == 10 and excluded["reason"].str.startswith("background tile").all()
    written = {p.stem for p in (tmp_path / "split").glob("*/HR/*.png")}
    assert not written & set(excluded.index)
    # whole subjects are never dropped for being dark
    assert set(table.loc[table["image_id"] != "big", "split"]) <= {"train", "val", "test"}


def test_area_fractions_roughly_respected(tmp_path):
    table = _run(tmp_path, _dataset(tmp_path, n_subjects=20))
    area = (table["rows"] * table["cols"]).groupby(table["split"]).sum()
    share = area / area.sum()
    for split, target in FRACTIONS.items():
        assert abs(share[split] - target) < 0.05, share


def test_deterministic_per_seed_and_varies_across_seeds(tmp_path):
    norm = _dataset(tmp_path, n_subjects=12)
    first = _run(tmp_path, norm, seed=1, out="a")
    again = _run(tmp_path, norm, seed=1, out="b")
    pd.testing.assert_frame_equal(first, again)
    others = [_run(tmp_path, norm, seed=s, out=f"s{s}")["split"] for s in (2, 3, 4)]
    assert any(not other.equals(first["split"]) for other in others)


def test_too_few_units_names_the_folder_and_the_settings(tmp_path):
    norm = tmp_path / "mri_norm"
    for i in range(2):
        write_tiff(norm / f"x{i}.tif", np.zeros((48, 48)))
    index_rows(
        [{"image_id": f"x{i}", "subject_id": s, "status": "ok"} for i, s in enumerate("st")], tmp_path / "index.tsv"
    )
    with pytest.raises(ValueError, match=r"mri_norm.*lower datasets.mri.split.tile_size .now 32.*48x48.*add subjects"):
        split_dataset(
            tmp_path / "index.tsv",
            norm,
            parts(tmp_path / "o"),
            tmp_path / "o.tsv",
            scale=4,
            fractions=FRACTIONS,
            seed=0,
            tile_size=32,
            dataset="mri",
            **DEGRADE,
        )


def test_old_split_tables_read_with_subject_as_group(tmp_path):
    pd.DataFrame({"id": ["a"], "subject_id": ["s"], "split": ["test"]}).to_csv(
        tmp_path / "s.tsv", sep="\t", index=False
    )
    assert read_split_table(tmp_path / "s.tsv")["group"].tolist() == ["s"]


def test_bad_fractions_and_tile_size(tmp_path):
    norm = _dataset(tmp_path, n_subjects=3)
    with pytest.raises(ValueError, match="sum to 1"):
        split_dataset(
            tmp_path / "index.tsv",
            norm,
            parts(tmp_path / "o"),
            tmp_path / "o.tsv",
            scale=4,
            fractions={"train": 0.8, "val": 0.15, "test": 0.15},
            seed=0,
            tile_size=32,
            **DEGRADE,
        )
    with pytest.raises(ValueError, match="multiple of the scale"):
        split_dataset(
            tmp_path / "index.tsv",
            norm,
            parts(tmp_path / "o"),
            tmp_path / "o.tsv",
            scale=4,
            fractions=FRACTIONS,
            seed=0,
            tile_size=30,
            **DEGRADE,
        )


def test_every_split_non_empty_with_three_units():
    for seed in range(20):
        assignment = assign_units({"a": 1000, "b": 10, "c": 10}, FRACTIONS, seed)
        assert set(assignment.values()) == {"train", "val", "test"}


def test_tile_grid_discards_remainder():
    assert tile_grid(70, 100, 32) == [
        (0, 0, 0, 0),
        (0, 1, 0, 32),
        (0, 2, 0, 64),
        (1, 0, 32, 0),
        (1, 1, 32, 32),
        (1, 2, 32, 64),
    ]


def fold_parts(folder, folds):
    """The split_folds rule's part folders: {fold: {train, val, test: folder}}."""
    return {f: {split: folder / f"fold{f}" / split for split in ("train", "val", "test")} for f in range(1, folds + 1)}


def _run_folds(root, norm, folds=3, seed=0, out="split"):
    return split_dataset(
        root / "index.tsv",
        norm,
        fold_parts(root / out, folds),
        root / f"{out}.tsv",
        scale=4,
        fractions=FRACTIONS,
        seed=seed,
        tile_size=32,
        **DEGRADE,
    )


def test_folds_test_every_group_exactly_once_and_never_train_on_it(tmp_path):
    norm = _dataset(tmp_path)  # 8 small subjects and one big image (a lone group: tiled in a holdout)
    table = _run_folds(tmp_path, norm, folds=3)
    assert list(table.columns) == SPLIT_COLUMNS and set(table["fold"]) == {1, 2, 3}
    pieces = table[table["fold"] == 1]["id"]
    assert len(table) == 3 * len(pieces)  # one row per fold and piece
    tested = table[table["split"] == "test"]
    assert tested["id"].is_unique and set(tested["id"]) == set(pieces)  # every piece tested exactly once
    assert tested.groupby("group")["fold"].nunique().eq(1).all()  # a group never straddles folds
    assert not (table["group_rule"] == "tile").any() and (table["id"] == table["image_id"]).all()  # no tiles
    for fold in (1, 2, 3):
        sel = table[table["fold"] == fold]
        test_groups = set(sel.loc[sel["split"] == "test", "group"])
        assert test_groups and not test_groups & set(sel.loc[sel["split"] != "test", "group"])
        assert {"train", "val"} <= set(sel["split"])
        for split in ("train", "val", "test"):
            hr = {p.stem for p in (tmp_path / "split" / f"fold{fold}" / split / "HR").glob("*.png")}
            assert hr == set(sel.loc[sel["split"] == split, "id"])
    # the same piece in every fold holds the same bytes (degraded once, linked)
    one = tested["id"].iloc[0]
    copies = [
        tmp_path / "split" / f"fold{f}" / s / "LR" / f"{one}.png" for f in (1, 2, 3) for s in ("train", "val", "test")
    ]
    copies = [p for p in copies if p.exists()]
    assert len(copies) == 3 and len({p.read_bytes() for p in copies}) == 1
    assert len({p.stat().st_ino for p in copies}) == 1  # hard links on this file system


def test_folds_balance_pixels_and_follow_content_not_names(tmp_path):
    norm = _dataset(tmp_path, n_subjects=12)
    table = _run_folds(tmp_path, norm, folds=4)
    tested = table[table["split"] == "test"]
    pixels = (tested["rows"] * tested["cols"]).groupby(tested["fold"]).sum()
    assert pixels.max() <= pixels.min() + (96 * 136)  # greedy by pixels: within the largest group of each other
    # renaming every image and subject (other pseudonyms) changes no fold
    renamed = tmp_path / "renamed"
    norm2 = renamed / "norm"
    rows = []
    for path in sorted(norm.glob("*.tif")):
        new = f"x{path.stem[::-1]}"
        norm2.mkdir(parents=True, exist_ok=True)
        (norm2 / f"{new}.tif").write_bytes(path.read_bytes())
    index = pd.read_csv(tmp_path / "index.tsv", sep="\t", dtype=str, keep_default_na=False)
    for row in index.to_dict("records"):
        row["image_id"] = f"x{row['image_id'][::-1]}"
        row["subject_id"] = f"y{row['subject_id'][::-1]}"
        rows.append(row)
    index_rows(rows, renamed / "index.tsv")
    again = _run_folds(renamed, norm2, folds=4)
    before = dict(zip(tested["id"].map(lambda i: f"x{i[::-1]}"), tested["fold"]))
    after = dict(zip(again.loc[again["split"] == "test", "id"], again.loc[again["split"] == "test", "fold"]))
    assert before == after


def test_too_few_groups_for_the_folds_stop_with_the_counts(tmp_path):
    norm = _dataset(tmp_path, n_subjects=3)  # 3 subjects + the big image: 4 groups
    with pytest.raises(ValueError, match=r"4 subject group\(s\) for study.folds 5.*at least 6 groups"):
        _run_folds(tmp_path, norm, folds=5)
    assert len(_run_folds(tmp_path, norm, folds=3)) == 3 * 7  # 4 groups, 7 images, 3 folds


def test_a_single_holdout_is_fold_one(tmp_path):
    norm = _dataset(tmp_path)
    flat = _run(tmp_path, norm, out="flat")
    folded = split_dataset(
        tmp_path / "index.tsv",
        norm,
        fold_parts(tmp_path / "one", 1),
        tmp_path / "one.tsv",
        scale=4,
        fractions=FRACTIONS,
        seed=0,
        tile_size=32,
        **DEGRADE,
    )
    assert (flat["fold"] == 1).all()
    pd.testing.assert_frame_equal(flat, folded)
    assert read_split_table(tmp_path / "one.tsv")["fold"].eq(1).all()


def test_the_split_writes_each_pair_once_into_the_training_store(tmp_path):
    """Every fold's part reads its pairs from the dataset's one store: the same pixels as its PNGs."""
    from scisr.prepare.store import open_part

    norm = _dataset(tmp_path)
    table = split_dataset(
        tmp_path / "index.tsv",
        norm,
        fold_parts(tmp_path / "split", 3),
        tmp_path / "split.tsv",
        scale=4,
        fractions=FRACTIONS,
        seed=0,
        tile_size=32,
        store_dir=tmp_path / "store",
        **DEGRADE,
    )
    pieces = table.loc[table["fold"] == 1, "id"]
    index = (tmp_path / "store" / "index.json").read_text()
    assert all(index.count(f'"{p}.png"') == 1 for p in pieces)  # once each, whatever the folds
    for fold in (1, 2, 3):
        for part in ("train", "val", "test"):
            folder = tmp_path / "split" / f"fold{fold}" / part
            store = open_part(folder, tmp_path / "store")
            assert sorted(store.names) == sorted(p.name for p in (folder / "HR").glob("*.png"))
            for i, name in enumerate(store.names):
                lr, hr = store.image(i)
                assert np.array_equal(hr, read_png16(folder / "HR" / name))
                assert np.array_equal(lr, read_png16(folder / "LR" / name))


@pytest.mark.parametrize("folds", [1, 3])
def test_work_units_give_the_single_job_result(tmp_path, folds):
    """The split as the workflow runs it (a plan, a degrading job per work unit, a gather) writes what one job
    writes: split.tsv, every part's PNG bytes, and a training store serving the same pixels; each subject group's
    pairs come from one unit."""
    from scisr.prepare.split import degrade_unit, gather_split, plan_split
    from scisr.prepare.store import PairStore
    from scisr.units import unit_of

    norm = _dataset(tmp_path)
    out = fold_parts(tmp_path / "one", folds) if folds > 1 else parts(tmp_path / "one")
    common = dict(
        scale=4, seed=0, degradation=DEGRADE["degradation"], degradation_options=DEGRADE["degradation_options"]
    )
    plan = dict(
        fractions=FRACTIONS,
        tile_size=32,
        min_foreground=DEGRADE["min_foreground"],
        slab_gap=DEGRADE["slab_gap"],
        pointing_tolerance=DEGRADE["pointing_tolerance"],
    )
    split_dataset(
        tmp_path / "index.tsv", norm, out, tmp_path / "one.tsv", store_dir=tmp_path / "one_store", **common, **plan
    )
    table = plan_split(tmp_path / "index.tsv", norm, tmp_path / "many.tsv", folds=folds, scale=4, seed=0, **plan)
    assert (tmp_path / "many.tsv").read_bytes() == (tmp_path / "one.tsv").read_bytes()
    units = 3
    groups = set(table.loc[table["split"] != "excluded", "group"])
    assert len({unit_of(g, units) for g in groups}) == units
    work = []
    for unit in range(1, units + 1):
        folder = tmp_path / "units" / str(unit)
        degrade_unit(
            tmp_path / "many.tsv", norm, folder / "pairs", unit=unit, units=units, store_dir=folder / "store", **common
        )
        work.append((folder / "pairs", folder / "store"))
    many = fold_parts(tmp_path / "many", folds) if folds > 1 else parts(tmp_path / "many")
    gather_split(tmp_path / "many.tsv", work, many, store_dir=tmp_path / "many_store")
    one_files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.png"))
    assert one_files == sorted(p.relative_to(tmp_path / "many") for p in (tmp_path / "many").rglob("*.png"))
    for rel in one_files:
        assert (tmp_path / "many" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes()
    a, b = PairStore(tmp_path / "one_store"), PairStore(tmp_path / "many_store")
    assert a.names == b.names and len(a) == len(set(table.loc[table["split"] != "excluded", "id"]))
    for i in range(len(a)):
        assert all(np.array_equal(x, y) for x, y in zip(a.image(i), b.image(i)))


def test_the_plan_takes_pixel_digests_from_params_instead_of_reading_pixels(tmp_path, monkeypatch):
    """With the normalize phase's params.tsv (its sha256 column) the plan reads no image's pixels but those it tiles
    (the background check), and plans exactly what it plans from the pixels."""
    import scisr.prepare.split as split_module
    from scisr.io.files import read_tiff
    from scisr.prepare.normalize import PARAMS_COLUMNS, pixel_digest, write_params
    from scisr.prepare.split import plan_split

    norm = _dataset(tmp_path)
    rows = [
        dict.fromkeys(PARAMS_COLUMNS, "") | {"image_id": p.stem, "status": "ok", "sha256": pixel_digest(read_tiff(p))}
        for p in sorted(norm.glob("*.tif"))
    ]
    write_params(pd.DataFrame(rows, columns=PARAMS_COLUMNS), tmp_path / "params.tsv")
    plan = dict(
        folds=1,
        scale=4,
        seed=0,
        fractions=FRACTIONS,
        tile_size=32,
        min_foreground=0.1,
        slab_gap=DEGRADE["slab_gap"],
        pointing_tolerance=DEGRADE["pointing_tolerance"],
    )
    plan_split(tmp_path / "index.tsv", norm, tmp_path / "read.tsv", **plan)
    reads = []
    monkeypatch.setattr(split_module, "read_tiff", lambda path: reads.append(path.stem) or read_tiff(path))
    plan_split(tmp_path / "index.tsv", norm, tmp_path / "given.tsv", params_path=tmp_path / "params.tsv", **plan)
    assert (tmp_path / "given.tsv").read_bytes() == (tmp_path / "read.tsv").read_bytes()
    assert set(reads) == {"big"}  # the one tiled image, for its background tiles
