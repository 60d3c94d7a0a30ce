"""DistributedDataParallel training on one node: the worker that torchrun starts once per process.

`scisr.train.run_training` launches it when the settings ask for `gpus` > 1:

    python -m torch.distributed.run --standalone --nproc-per-node N -m scisr.train.distributed \
        SPLIT_DIR OUT_DIR CHECKPOINT_DIR SETTINGS_JSON --name NAME --device cpu|cuda --threads T

Each process joins the group (nccl on CUDA, each on cuda:LOCAL_RANK; gloo on CPU), trains with the shared
`_Trainer` through DDP wrappers, and leaves the group on success and on error. Rank 0 alone validates and
writes checkpoints, history, generator.pt and model.yaml. Every process resumes from the same checkpoint,
which stores each process's patch-sampler state, so a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record

from scisr.models.device import resolve_device
from scisr.train.loop import Settings, _make_trainer, _write_outputs

log = logging.getLogger(__name__)


def train_worker(
    split_dir: str | Path,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    settings: dict,
    *,
    name: str,
    device: str = "cpu",
    threads: int = 1,
) -> None:
    """Train as one process of a torchrun group (RANK, LOCAL_RANK and WORLD_SIZE set by torchrun)."""
    split_dir, out_dir, checkpoint_dir = Path(split_dir), Path(out_dir), Path(checkpoint_dir)
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except KeyError as missing:
        raise RuntimeError(f"{missing} is not set: start this module with torchrun (see run_training)") from None
    cfg = Settings.from_dict(settings)
    if world_size != cfg.gpus:
        raise RuntimeError(f"training {name}: settings ask for gpus {cfg.gpus} but torchrun started {world_size}")
    dev = resolve_device(device)  # 'cuda' -> cuda:LOCAL_RANK
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        dist.init_process_group("nccl", device_id=dev)
    else:
        dist.init_process_group("gloo")
    try:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        trainer, hr_sha = _make_trainer(split_dir, checkpoint_dir, settings, cfg, dev, name, rank=rank,
                                        world_size=world_size)
        trainer.try_resume()
        _check_same_start(trainer, name)
        trainer.run()
        if rank == 0:
            _write_outputs(trainer, out_dir, split_dir, hr_sha, settings)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _check_same_start(trainer, name: str) -> None:
    """Stop every process unless all resumed from the same iteration (or all start fresh)."""
    starts = [None] * trainer.world_size
    dist.all_gather_object(starts, trainer.progress.iteration)
    if len(set(starts)) > 1:
        raise RuntimeError(f"training {name}: processes start from different iterations {starts} "
                           f"(a checkpoint unreadable by some?); delete {trainer.checkpoint_path} to start fresh")


@record
def main(argv: list[str] | None = None) -> None:
    """Command line of a torchrun worker (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m scisr.train.distributed", description=__doc__.split("\n")[0])
    parser.add_argument("split_dir")
    parser.add_argument("out_dir")
    parser.add_argument("checkpoint_dir")
    parser.add_argument("settings", help="JSON file of the training settings")
    parser.add_argument("--name", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="threads of this process")
    args = parser.parse_args(argv)
    rank = int(os.environ.get("RANK", 0))
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO if rank == 0 else logging.WARNING,
        format=f"%(asctime)s %(levelname)s rank {rank} %(name)s: %(message)s",
    )
    settings = json.loads(Path(args.settings).read_text())
    train_worker(args.split_dir, args.out_dir, args.checkpoint_dir, settings, name=args.name, device=args.device,
                 threads=args.threads)


if __name__ == "__main__":
    main()
