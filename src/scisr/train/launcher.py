"""Several training processes for one model: launch them with torchrun and report a failure by its root cause.

`launch` runs `python -m torch.distributed.run --standalone --nproc-per-node N -m scisr.train.distributed JOB`
where JOB is the job as JSON (checkpoint_dir/distributed-job.json, written by `TrainJob.to_dict`); each worker
runs the same training code as a single process (`scisr.train.run.run_process`), as rank r of N. The workers'
output goes to this process's stderr (the job log); when torchrun fails, the error names the root-cause rank,
its exit code and exception.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from scisr.io.files import write_text_atomic
from scisr.train.job import TrainJob

log = logging.getLogger(__name__)

JOB_FILE = "distributed-job.json"  # the job handed to the torchrun workers, in the checkpoint folder


def check_gpus(name: str, device: str, gpus: int) -> None:
    """Refuse a device that cannot host `gpus` processes (CUDA: that many visible GPUs, no fixed index)."""
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: use 'cpu' or 'cuda'")
    if dev.type == "cuda":
        if dev.index is not None:
            raise ValueError(
                f"training {name}: device {device!r} with gpus {gpus}: use 'cuda' (process i takes "
                "cuda:i of the GPUs the job sees)"
            )
        visible = torch.cuda.device_count()
        if visible < gpus:
            raise RuntimeError(
                f"training {name}: train.gpus is {gpus} but torch sees {visible} GPU(s); give the job {gpus} GPUs "
                "(the train rule requests compute.gpus x train.gpus) or lower train.gpus"
            )


def launch(job: TrainJob) -> None:
    """Run `job` in settings.gpus DistributedDataParallel processes on this node, threads // gpus threads each.

    Device 'cuda' gives process i cuda:i (backend nccl), 'cpu' runs them all on the CPU (backend gloo).
    """
    gpus = job.settings.gpus
    check_gpus(job.name, job.device, gpus)
    per_process = max(1, job.threads // gpus)
    job_file = Path(job.checkpoint_dir).resolve() / JOB_FILE
    worker_job = dataclasses.replace(job.absolute(), threads=per_process)
    write_text_atomic(job_file, json.dumps(worker_job.to_dict(), indent=1, sort_keys=True) + "\n")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={gpus}",
        "-m",
        "scisr.train.distributed",
        str(job_file),
    ]
    # the workers import scisr as this process does: installed in its environment (venv or the rule's conda env)
    env = dict(os.environ, OMP_NUM_THREADS=str(per_process), PYTHONUNBUFFERED="1")
    log.info(
        "training %s in %d processes (%s, %d threads each): %s",
        job.name,
        gpus,
        job.device,
        per_process,
        " ".join(command),
    )
    tail: collections.deque[str] = collections.deque(maxlen=200)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, errors="replace", bufsize=1
    ) as process:
        try:
            for line in process.stdout:
                sys.stderr.write(line)
                tail.append(line)
            sys.stderr.flush()
            code = process.wait()
        except BaseException:  # interrupted: take the workers down with us
            process.terminate()
            process.wait()
            raise
    if code != 0:
        raise RuntimeError(failure_message(job.name, gpus, code, "".join(tail)))


def failure_message(name: str, gpus: int, code: int, output: str) -> str:
    """The error of a failed torchrun: the root-cause rank, its exit code and exception, read from its summary."""
    root_cause = output[output.rfind("Root Cause") :] if "Root Cause" in output else output
    found = re.search(r"rank\s*:\s*(\d+)\s*\(local_rank:\s*\d+\)\s*\n\s*exitcode\s*:\s*(-?\d+)", root_cause)
    where = f"rank {found[1]} exited with code {found[2]}" if found else f"torchrun exited with code {code}"
    errors = re.findall(r"^\s*((?:[\w.]+\.)?\w*(?:Error|Exception|Interrupt)\b:.*)$", root_cause, re.M)
    reason = f" ({errors[-1].strip()})" if errors else ""
    return (
        f"training {name} in {gpus} processes (torchrun) failed: {where}{reason}; the processes' output is "
        "in the job log above"
    )
