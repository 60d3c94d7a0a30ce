"""Device choice: CPU works everywhere, CUDA is refused without a GPU, GPUs are claimed once each."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from scisr.compute import claim_gpu
from scisr.models.device import resolve_device


def test_cpu_and_refused_cuda() -> None:
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="use 'cpu'"):
        resolve_device("mps")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="is_available"):
            resolve_device("cuda")


def test_concurrent_jobs_claim_different_gpus_and_release_on_exit(tmp_path: Path) -> None:
    holder = textwrap.dedent(f"""
        import sys, time
        from scisr.compute import claim_gpu
        print(claim_gpu(3, {str(tmp_path)!r}), flush=True)
        time.sleep(30)
    """)
    first = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    second = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        claimed = {int(first.stdout.readline()), int(second.stdout.readline())}
        assert claimed == {0, 1}
        assert claim_gpu(3, tmp_path) == 2  # this process takes the last free one
        with pytest.raises(RuntimeError, match="all 3 visible GPUs are held"):
            claim_gpu(3, tmp_path)
    finally:
        first.kill()
        second.kill()
        first.wait()
        second.wait()
    assert claim_gpu(3, tmp_path) in (0, 1)  # a killed job's GPU is free again
