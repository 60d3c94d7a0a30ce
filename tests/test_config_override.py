"""A user's `--configfile` may switch a dataset to another source kind (Snakemake deep-merges it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_snakemake


def dry_run(exe: str, work: Path, *configfiles: Path) -> subprocess.CompletedProcess:
    return run_snakemake(exe, work, "--dry-run", configfiles=configfiles, cores=1, timeout=300)


@pytest.mark.slow  # two Snakemake dry runs
def test_configfile_can_switch_sources_to_other_kinds(snakemake_exe: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    images = tmp_path / "my_dicoms"
    images.mkdir()
    override = tmp_path / "my.yaml"
    override.write_text(
        yaml.safe_dump(
            {
                "datasets": {
                    "mri": {"source": {"kind": "local", "path": str(images), "patterns": ["*.dcm"]}},
                    "astro": {"source": {"kind": "kaggle", "dataset": "abhikalpsrivastava15/space-images-category"}},
                }
            }
        )
    )
    result = dry_run(snakemake_exe, tmp_path, tmp_path / "config" / "config.yaml", override)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "datasets.mri.source is kind local; dropped set" in output
    assert "datasets.astro.source is kind kaggle; dropped set" in output
    assert "download" in result.stdout

    # A typo is still an error: only keys that belong to another kind are dropped.
    override.write_text(
        yaml.safe_dump({"datasets": {"mri": {"source": {"kind": "local", "path": str(images), "pattern": ["*.dcm"]}}}})
    )
    result = dry_run(snakemake_exe, tmp_path, tmp_path / "config" / "config.yaml", override)
    assert result.returncode != 0 and "pattern" in result.stdout + result.stderr


@pytest.mark.slow  # a Snakemake dry run of the full-scale study
def test_study_config_merges_over_the_default(snakemake_exe: str, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    result = dry_run(snakemake_exe, tmp_path, tmp_path / "config" / "config.yaml", tmp_path / "config" / "study.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow  # a Snakemake run of the download rule
def test_workflow_downloads_an_http_source_into_raw_and_cache(snakemake_exe: str, tmp_path: Path) -> None:
    import hashlib
    import io
    import zipfile

    from netserver import Reply, Server

    shutil.copytree(ROOT / "config", tmp_path / "config")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("photos/a.png", b"\x89PNG one")
        zf.writestr("photos/notes.txt", b"left out by patterns")
    data = buffer.getvalue()
    with Server() as server:
        server.routes["/d/photos.zip"] = Reply(data)
        override = tmp_path / "my.yaml"
        override.write_text(
            yaml.safe_dump(
                {
                    "datasets": {
                        "generic": {
                            "source": {
                                "kind": "http",
                                "patterns": ["*.png"],
                                "files": [
                                    {
                                        "url": f"{server.url}/d/photos.zip",
                                        "sha256": hashlib.sha256(data).hexdigest(),
                                        "size": len(data),
                                    }
                                ],
                            }
                        }
                    }
                }
            )
        )
        result = run_snakemake(
            snakemake_exe,
            tmp_path,
            "resources/raw/generic/MANIFEST.tsv",
            cores=1,
            timeout=300,
            configfiles=[tmp_path / "config" / "config.yaml", override],
        )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "resources/raw/generic/photos/a.png").read_bytes() == b"\x89PNG one"
    assert not (tmp_path / "resources/raw/generic/photos/notes.txt").exists()
    assert (tmp_path / "resources/cache/generic/photos.zip").read_bytes() == data
