"""The torchrun worker: one process of a DistributedDataParallel training run on one node.

`scisr.train.train` launches it (scisr.train.launcher) when the settings ask for `gpus` > 1:

    python -m torch.distributed.run --standalone --nproc-per-node N -m scisr.train.distributed JOB_JSON

Each process reads the job, joins the group (nccl on CUDA, each on cuda:LOCAL_RANK; gloo on CPU) and runs the
same code as a single-process run (`scisr.train.run.run_process`) as rank RANK of WORLD_SIZE, leaving the group
on success and on error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import record

from scisr.train.job import TrainJob
from scisr.train.run import run_process


@record
def main(argv: list[str] | None = None) -> None:
    """Command line of a torchrun worker (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m scisr.train.distributed", description=__doc__.split("\n")[0])
    parser.add_argument("job", help="the training job as JSON (written by scisr.train.launcher)")
    args = parser.parse_args(argv)
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except KeyError as missing:
        raise RuntimeError(
            f"{missing} is not set: start this module with torchrun (see scisr.train.launcher)"
        ) from None
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s %(levelname)s rank {rank} %(name)s: %(message)s",
    )
    run_process(TrainJob.from_dict(json.loads(Path(args.job).read_text())), rank, world_size)


if __name__ == "__main__":
    main()
