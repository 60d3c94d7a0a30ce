"""Helpers of the network source tests (tests/test_tcia_source.py, tests/test_kaggle_http_sources.py): the
source as the workflow passes it, fast retries, a fetch in a child process to kill, stray staging folders."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from snakemake.utils import validate

from scisr.sources import net


def make_retries_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(net, "BACKOFF_S", 0.0)
    monkeypatch.setattr(net, "RETRIES", 2)
    monkeypatch.setattr(net, "TIMEOUT_S", 10.0)


def with_defaults(source: dict) -> dict:
    """The source as the workflow passes it: validated by config/schema.yaml, defaults filled."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["datasets"]["mri"]["source"] = copy.deepcopy(source)
    validate(config, str(ROOT / "config" / "schema.yaml"))
    return config["datasets"]["mri"]["source"]


def strays(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".fetching") or ".old-" in p.name)


def run_fetch_in_child(source: dict, out: Path, cache: Path) -> subprocess.Popen:
    code = (
        "import json, sys; from scisr.sources import fetch, net; net.BACKOFF_S = 0; "
        "fetch(json.loads(sys.argv[1]), sys.argv[2], sys.argv[2] + '/MANIFEST.tsv', cache_dir=sys.argv[3])"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", code, json.dumps(source), str(out), str(cache)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(condition, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)
