"""Download phase: builtin sets, local folders, the manifest, the kind registry."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import pytest

from scisr.io.hashing import file_sha256
from scisr.sources import COLUMNS, KINDS, fetch, read_manifest
from scisr.sources.builtin import SETS


def check_manifest(table: pd.DataFrame, out_dir: Path, manifest: Path) -> None:
    """Every manifest row matches the file on disk, and the TSV equals the returned table."""
    assert list(table.columns) == COLUMNS
    assert len(table) > 0 and table["path"].is_unique
    for row in table.itertuples():
        path = out_dir / row.path
        assert path.is_file(), row.path
        assert path.stat().st_size == row.bytes
        assert file_sha256(path) == row.sha256, row.path
    on_disk = read_manifest(manifest)
    pd.testing.assert_frame_equal(on_disk, table, check_dtype=False)
    listed = {p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file()}
    assert listed - {manifest.relative_to(out_dir).as_posix()} == set(table["path"])


@pytest.mark.parametrize("name", sorted(SETS))
def test_builtin_sets(tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    table = fetch({"kind": "builtin", "set": name}, out, out / "MANIFEST.tsv")
    check_manifest(table, out, out / "MANIFEST.tsv")
    assert table["source"].str.startswith("builtin:").all()


def test_builtin_members(tmp_path: Path) -> None:
    mri = fetch({"kind": "builtin", "set": "mri"}, tmp_path / "mri", tmp_path / "mri.tsv")
    paths = set(mri["path"])
    assert {"MR_small.dcm", "MR_small_RLE.dcm", "MR_truncated.dcm", "examples_overlay.dcm"} <= paths
    assert "CT_small.dcm" not in paths  # Modality CT
    assert "builtin:pydicom/MR_small.dcm" in set(mri["source"])
    generic = fetch({"kind": "builtin", "set": "generic"}, tmp_path / "gen", tmp_path / "gen.tsv")
    subjects = dict(zip(generic["path"], generic["subject"]))
    assert subjects["motorcycle_left.png"] == subjects["motorcycle_right.png"] == "motorcycle"
    assert subjects["camera.png"] == ""
    astro = fetch({"kind": "builtin", "set": "astro"}, tmp_path / "astro", tmp_path / "astro.tsv")
    assert {"hubble_deep_field.jpg", "moon.png"} <= set(astro["path"])


def test_unknown_kind_and_set(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown source kind 'ftp'.*known kinds: builtin, http, kaggle, local, tcia"):
        fetch({"kind": "ftp"}, tmp_path / "o", tmp_path / "m.tsv")
    with pytest.raises(ValueError, match=r"unknown set 'xray'.*known sets: mri, astro, generic"):
        fetch({"kind": "builtin", "set": "xray"}, tmp_path / "o", tmp_path / "m.tsv")
    assert not (tmp_path / "o").exists()
    assert set(KINDS) >= {"builtin", "local"}


def make_folder(root: Path) -> Path:
    src = root / "src"
    (src / "series1").mkdir(parents=True)
    (src / "series1" / "1.dcm").write_bytes(b"a" * 10)
    (src / "series1" / "2.DCM").write_bytes(b"b" * 20)
    (src / "img.fits").write_bytes(b"SIMPLE" + bytes(10))
    (src / "notes.txt").write_text("hi")
    (src / ".hidden").write_text("x")
    (src / ".git").mkdir()
    (src / ".git" / "config").write_text("x")
    return src


def test_local_copies_with_subfolders(tmp_path: Path) -> None:
    src = make_folder(tmp_path)
    out = tmp_path / "raw"
    table = fetch({"kind": "local", "path": str(src)}, out, out / "MANIFEST.tsv")
    assert list(table["path"]) == ["img.fits", "notes.txt", "series1/1.dcm", "series1/2.DCM"]
    assert table.loc[table["path"] == "img.fits", "source"].item() == "local:img.fits"  # no absolute path
    check_manifest(table, out, out / "MANIFEST.tsv")

    picked = fetch({"kind": "local", "path": str(src), "patterns": ["*.dcm", "*.fits"]}, out, out / "MANIFEST.tsv")
    assert list(picked["path"]) == ["img.fits", "series1/1.dcm", "series1/2.DCM"]  # case-insensitive
    assert not (out / "notes.txt").exists()  # the rerun replaced the content: nothing stale
    check_manifest(picked, out, out / "MANIFEST.tsv")


def test_local_follows_symlinks(tmp_path: Path) -> None:
    src = make_folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "linked.png").write_bytes(b"png")
    os.symlink(elsewhere, src / "linkdir")
    os.symlink(src, src / "series1" / "loop")  # a cycle is visited once
    table = fetch({"kind": "local", "path": str(src), "patterns": ["*.png"]}, tmp_path / "raw", tmp_path / "m.tsv")
    assert list(table["path"]) == ["linkdir/linked.png"]
    assert (
        not (tmp_path / "raw" / "linkdir").is_symlink()
        and (tmp_path / "raw" / "linkdir" / "linked.png").read_bytes() == b"png"
    )


def test_local_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="folder does not exist"):
        fetch({"kind": "local", "path": str(tmp_path / "nope")}, tmp_path / "raw", tmp_path / "m.tsv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no files match"):
        fetch({"kind": "local", "path": str(tmp_path / "empty")}, tmp_path / "raw", tmp_path / "m.tsv")
    src = make_folder(tmp_path)
    with pytest.raises(ValueError, match="overlap"):
        fetch({"kind": "local", "path": str(src)}, src / "raw", tmp_path / "m.tsv")
    with pytest.raises(ValueError, match="overlap"):
        fetch({"kind": "local", "path": str(src / "series1")}, src, tmp_path / "m.tsv")
    assert (src / "series1" / "1.dcm").exists()


def test_failed_fetch_keeps_previous_content(tmp_path: Path) -> None:
    src = make_folder(tmp_path)
    out = tmp_path / "raw"
    fetch({"kind": "local", "path": str(src)}, out, out / "MANIFEST.tsv")
    with pytest.raises(ValueError):
        fetch({"kind": "local", "path": str(src), "patterns": ["*.nothing"]}, out, out / "MANIFEST.tsv")
    assert (out / "img.fits").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_absent_optional_files_are_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from scisr.sources import builtin

    monkeypatch.setattr(builtin, "ASTRO_ASTROPY", [*builtin.ASTRO_ASTROPY, "io/fits/tests/data/missing.fits"])
    with caplog.at_level(logging.WARNING, logger="scisr.sources"):
        table = fetch({"kind": "builtin", "set": "astro"}, tmp_path / "a", tmp_path / "a.tsv")
    assert "builtin:astropy/io/fits/tests/data/missing.fits" in caplog.text
    assert len(table) >= 2


def test_stale_staging_folders_are_removed_and_only_those(tmp_path: Path) -> None:
    src = make_folder(tmp_path)
    raw = tmp_path / "raw"
    raw.mkdir()
    dead = raw / ".mri.999999999.abcd.fetching"  # no such process
    old_style = raw / ".mri.k2j4h5.fetching"  # from before process ids were in the name
    old_copy = raw / ".mri.old-1a2b3c4d"
    running = raw / f".mri.{os.getppid()}.efgh.fetching"  # a live process: maybe another fetch
    other_dataset = raw / ".mri2.999999999.abcd.fetching"
    lookalike_file = raw / ".mri.999999999.file.fetching"
    for folder in (dead, old_style, old_copy, running, other_dataset):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "x.dcm").write_bytes(b"x")
    lookalike_file.write_text("not a folder")
    fetch({"kind": "local", "path": str(src)}, raw / "mri", raw / "mri" / "MANIFEST.tsv")
    left = {p.name for p in raw.iterdir()}
    assert left == {"mri", running.name, other_dataset.name, lookalike_file.name}
    umask = os.umask(0)
    os.umask(umask)
    assert (raw / "mri").stat().st_mode & 0o777 == 0o777 & ~umask  # a normal folder, not mkdtemp's 0700
