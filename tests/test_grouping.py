"""Grouping on real-shaped data: one subject's volume cut into slabs, FITS frames of one sky field kept together."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from study_data import run_chain, write_fits, write_series

from scisr.index import read_index
from scisr.prepare.grouping import angular_distance, slab_sizes, subject_groups
from scisr.prepare.split import read_split_table
from scisr.report.stats import subjects_from_split


def _positions(paths: dict[str, Path]) -> pd.DataFrame:
    """split.tsv rows with each slice's position from index.tsv."""
    table = read_split_table(paths["table"])
    index = read_index(paths["index"]).set_index("image_id")
    return table.assign(position=table["image_id"].map(index["slice_position"]).astype(float))


def test_single_subject_series_is_cut_into_slabs(tmp_path: Path) -> None:
    write_series(tmp_path / "scans" / "series1", 40, spacing=2.5)
    paths = run_chain(tmp_path / "scans", tmp_path / "work", slab_gap=2)
    table = _positions(paths)
    assert len(table) == 40 and table["image_id"].is_unique  # every slice listed once
    used = table[table["split"] != "excluded"]
    assert (used["group_rule"] == "slab").all() and set(used["split"]) == {"train", "val", "test"}
    assert used["group"].nunique() == 1 and used["unit"].nunique() == 3
    # each split is one contiguous run of positions; runs are separated by the 2-slice gaps
    ranges = used.groupby("split")["position"].agg(["min", "max", "count"])
    for split, row in ranges.iterrows():
        assert row["count"] == round((row["max"] - row["min"]) / 2.5) + 1, split
    ordered = ranges.sort_values("min")
    gaps = ordered["min"].to_numpy()[1:] - ordered["max"].to_numpy()[:-1]
    np.testing.assert_allclose(gaps, 3 * 2.5)  # two left-out slices between neighbouring slabs
    gap_rows = table[table["split"] == "excluded"]
    assert len(gap_rows) == 4 and gap_rows["reason"].str.startswith("slab gap").all()
    # the biggest slab trains; the written files match the table
    assert ranges.loc["train", "count"] > ranges.loc["val", "count"] >= 1
    for split in ("train", "val", "test"):
        names = {p.stem for p in (paths["split"] / split / "HR").glob("*.png")}
        assert names == set(used.loc[used["split"] == split, "id"])
    # the report's view: every test slice shares its subject with training
    subjects = subjects_from_split({"mri": paths["table"]})
    test = subjects[subjects["split"] == "test"]
    assert len(test) == ranges.loc["test", "count"] and test["in_train"].all() and test["subject_id"].nunique() == 1


def test_too_large_a_slab_gap_is_named_in_the_error(tmp_path: Path) -> None:
    write_series(tmp_path / "scans", 10)
    with pytest.raises(ValueError, match=r"lower datasets\.data\.split\.slab_gap \(now 5\).*10 slice positions"):
        run_chain(tmp_path / "scans", tmp_path / "work", slab_gap=5)


def test_second_subject_keeps_whole_and_one_volume_is_halved(tmp_path: Path) -> None:
    write_series(tmp_path / "scans" / "a", 20, patient_id="A", seed=1)
    write_series(tmp_path / "scans" / "b", 12, patient_id="B", seed=2)
    table = _positions(run_chain(tmp_path / "scans", tmp_path / "work", slab_gap=1))
    used = table[table["split"] != "excluded"]
    assert set(used["split"]) == {"train", "val", "test"} and used.groupby("id")["split"].nunique().max() == 1
    slabs = used[used["group_rule"] == "slab"]
    whole = used[used["group_rule"] == "patient"]
    assert len(whole) == 12 and whole["split"].nunique() == 1  # the smaller subject is not cut
    assert slabs["unit"].nunique() == 2 and slabs["group"].nunique() == 1 and len(slabs) == 19


def test_overlapping_fits_frames_stay_in_one_split(tmp_path: Path) -> None:
    sky = tmp_path / "sky"
    # J, H and K of one field: 64" frames offset by 20" and 40" (less than their size), no OBJECT
    for k, band in enumerate("JHK"):
        write_fits(sky / f"field_{band}.fits", 150.0 + k * 20 / 3600, 2.0, seed=k)
    # two exposures with only a pointing, 10" apart, and six distant fields
    write_fits(sky / "point_a.fits", 30.0, -10.0, wcs=False, seed=10)
    write_fits(sky / "point_b.fits", 30.0 + 10 / 3600, -10.0, wcs=False, seed=11)
    for k in range(6):
        write_fits(sky / f"far_{k}.fits", 200.0 + 10 * k, 30.0, seed=20 + k)
    paths = run_chain(sky, tmp_path / "work", pointing_tolerance=0.01)
    index = read_index(paths["index"])
    assert (index["subject_rule"] == "file").all() and (index["sky_radius"] != "").all()
    table = read_split_table(paths["table"])
    source = table["image_id"].map(index.set_index("image_id")["sky_ra"].astype(float))
    field = table[(source - 150.0).abs() < 0.1]
    assert len(field) == 3 and field["group"].nunique() == 1 and field["split"].nunique() == 1
    assert (field["group_rule"] == "sky-field").all()
    pointing = table[(source - 30.0).abs() < 0.1]
    assert len(pointing) == 2 and pointing["split"].nunique() == 1 and (pointing["group_rule"] == "pointing").all()
    far = table[source >= 199]
    assert far["group"].nunique() == 6 and (far["group_rule"] == "file").all()
    assert table["split"].nunique() == 3  # distant fields are free to go anywhere
    subjects = subjects_from_split({"astro": paths["table"]})
    assert not subjects.loc[subjects["split"] == "test", "in_train"].any()  # no test sky is in training


def test_subject_groups_join_transitively_and_by_tolerance() -> None:
    images = pd.DataFrame(
        {
            "subject_id": ["a", "b", "c", "d", "e"],
            "subject_rule": ["object", "file", "file", "file", "patient"],
            "sky_ra": ["10.0", "10.05", "10.1", "40.0", ""],
            "sky_dec": ["0", "0", "0", "0", ""],
            "sky_radius": ["0.03", "0.03", "0.03", "0", ""],
        }
    )
    group_of, rule_of = subject_groups(images, pointing_tolerance=0.0)
    assert group_of["a"] == group_of["b"] == group_of["c"] == "a" and rule_of["a"] == "sky-field"
    assert rule_of[group_of["d"]] == "file" and rule_of[group_of["e"]] == "patient"
    group_of, _ = subject_groups(images, pointing_tolerance=30.0)
    assert group_of["d"] == "a" and group_of["e"] == "e"


def test_angular_distance_and_slab_sizes() -> None:
    assert angular_distance(0, 89.9, 180, 89.9) == pytest.approx(0.2, abs=1e-9)
    assert angular_distance(359.99, 0, 0.01, 0) == pytest.approx(0.02, abs=1e-9)
    assert slab_sizes(36, 3, {"train": 0.7, "val": 0.15, "test": 0.15}) == [25, 6, 5]  # largest remainders
    assert slab_sizes(3, 3, {"train": 0.98, "val": 0.01, "test": 0.01}) == [1, 1, 1]
    assert slab_sizes(9, 2, None) == [5, 4]
