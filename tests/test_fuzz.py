"""Bounded fuzzing of every reader: only ReadError escapes, no input hangs or kills the reader, nothing
allocates past a limit.

Each reader is fuzzed in a child process (tests/fuzz_readers.py) that reads every mutant the way the
extract phase does, in a reader worker process under RLIMIT_AS and a time limit: a native crash, a
runaway allocation or a hang kills that worker, is counted, and fails the test. The duration per
reader is SCISR_FUZZ_SECONDS (default 60 when CI=true, else 10); the counts are printed
(`pytest -s tests/test_fuzz.py`) so they can be reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("SCISR_FUZZ_SECONDS", "60" if os.environ.get("CI") == "true" else "10"))
HANG_S = 10.0
pytestmark = [pytest.mark.fuzz, pytest.mark.slow]  # SECONDS per reader, plus the child's start-up


@pytest.mark.parametrize("reader", ["dicom", "fits", "raster"])
def test_fuzz_reader(reader: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "RUST_BACKTRACE": "0",
    }
    cmd = [sys.executable, str(ROOT / "tests" / "fuzz_readers.py"), reader, str(SECONDS), "20260101", str(tmp_path)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=SECONDS + 120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{reader}: fuzzing hung; the input is {list(tmp_path.glob('current.*'))}")
    assert proc.returncode == 0, (
        f"{reader}: child died ({proc.returncode}) on {list(tmp_path.glob('current.*'))}: {proc.stderr[-2000:]}"
    )
    result = json.loads((tmp_path / "result.json").read_text())
    print(
        f"\nfuzz {reader}: {result['inputs']} inputs in {SECONDS:g} s from {result['seeds']} seeds, "
        f"slowest {result['slowest_s']} s, worker deaths {len(result['deaths'])}, outcomes {result['outcomes']}"
    )
    assert result["inputs"] > 50
    assert not result["escaped"], result["escaped"]
    assert not result["deaths"], result["deaths"]  # a signal in native code, a limit or a hang
    assert result["workers"] == 1
    assert result["slowest_s"] < HANG_S
    assert not any("MemoryError" in k for k in result["outcomes"]), result["outcomes"]
    assert result["outcomes"].get("ok", 0) > 0  # the mutator leaves some inputs readable: the readers were exercised
