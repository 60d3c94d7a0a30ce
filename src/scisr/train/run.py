"""The one training entry point: `train(job)` trains one model, in this process or in torchrun workers.

A `TrainJob` (scisr.train.job) names every path the train rule declares (train and val split folders,
generator.pt, history.tsv, model.yaml and the checkpoint folder outside the rule's outputs) and carries the
settings, parsed once (scisr.train.settings). With settings `gpus` 1 the job runs here;
with N > 1 `train` launches N DistributedDataParallel processes with torchrun (scisr.train.launcher), and each
worker runs the same `run_process` as rank r of N. Rank 0 alone validates and writes checkpoints and outputs.
A distributed checkpoint stores every process's patch-sampler state, so all processes resume from the same
checkpoint and a resumed run repeats the uninterrupted one (checked bit for bit with 2 CPU processes).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
import torch.distributed as dist

from scisr.budgets import snapshot_plan
from scisr.io.hashing import folder_sha256
from scisr.models.device import resolve_device
from scisr.prepare.split import pair_dirs
from scisr.train.budget import BudgetSnapshots
from scisr.train.export import training_card, write_outputs
from scisr.train.job import TrainJob
from scisr.train.launcher import launch
from scisr.train.start import InitWeights
from scisr.train.trainer import Trainer, fingerprint, perceptual_loss

log = logging.getLogger(__name__)


def train(job: TrainJob) -> None:
    """Train one model as the job says; write its generator.pt, history.tsv and model.yaml."""
    if job.settings.gpus > 1:
        launch(job)
    else:
        run_process(job)


@contextlib.contextmanager
def process_group(device: torch.device, world_size: int) -> Iterator[None]:
    """Join the torchrun group for the block (nccl on CUDA, gloo on CPU); nothing to join for one process."""
    if world_size == 1:
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def run_process(job: TrainJob, rank: int = 0, world_size: int = 1) -> None:
    """Train as process `rank` of `world_size` (1: the only one): build, resume, run, export (rank 0)."""
    cfg = job.settings
    if world_size != cfg.gpus:
        raise RuntimeError(
            f"training {job.name}: settings ask for gpus {cfg.gpus} but {world_size} process(es) were started"
        )
    device = resolve_device(job.device)  # under torchrun 'cuda' is cuda:LOCAL_RANK
    with process_group(device, world_size):
        torch.set_num_threads(job.threads)
        torch.use_deterministic_algorithms(True, warn_only=True)
        perceptual = perceptual_loss(cfg)  # checks the VGG19 file's sha256 before any training
        hr_dir, lr_dir = pair_dirs(job.train_dir)
        hr_sha, lr_sha = folder_sha256(hr_dir), folder_sha256(lr_dir)
        init = read_init(job)
        total = cfg.total_iterations
        snapshots = BudgetSnapshots(job.checkpoint_dir, set(snapshot_plan(job.budgets, total).values()))
        # a checkpoint resumes only from the same init weights; snapshots are taken while training, so other
        # budgets need a fresh run: both are part of the fingerprint
        hashed = cfg.to_dict()
        if job.budgets:
            hashed["budget_snapshots"] = sorted(snapshots.iterations)
        if init is not None:
            hashed["init_sha256"] = init.sha256
        trainer = Trainer(
            job.train_dir,
            job.val_dir,
            job.checkpoint_dir,
            cfg,
            fingerprint(hashed, hr_sha, lr_sha, perceptual),
            device,
            job.name,
            perceptual,
            rank=rank,
            world_size=world_size,
            init=init,
            store=job.store,
        )
        trainer.try_resume()
        snapshots.start(trainer.progress.iteration)
        trainer.hooks = (snapshots,)
        if world_size > 1:
            check_same_start(trainer)
        trainer.run()
        if trainer.is_main:
            card = training_card(
                trainer,
                dataset=job.dataset,
                normalization=job.normalization,
                threads=job.threads,
                train_hr_sha256=hr_sha,
                init=init,
                fold=job.fold,
                folds=job.folds,
            )
            write_outputs(trainer, card, generator=job.generator, history=job.history, card_path=job.card)
            if job.budget_table:
                snapshots.export(list(job.budgets), total, list(job.budget_weights), job.budget_table)
        trainer.barrier()


def read_init(job: TrainJob) -> InitWeights | None:
    """The weights a fine-tuning job starts from (its init model's generator.pt and card), or None."""
    if (job.init_generator is None) != (job.init_card is None):
        raise ValueError(
            f"training {job.name}: give both init_generator ({job.init_generator}) and init_card "
            f"({job.init_card}), or neither to train from scratch"
        )
    return None if job.init_generator is None else InitWeights.read(job.init_generator, job.init_card)


def check_same_start(trainer: Trainer) -> None:
    """Stop every process unless all resumed from the same iteration (or all start fresh)."""
    starts = [None] * trainer.world_size
    dist.all_gather_object(starts, trainer.progress.iteration)
    if len(set(starts)) > 1:
        raise RuntimeError(
            f"training {trainer.name}: processes start from different iterations {starts} "
            f"(a checkpoint unreadable by some?); delete {trainer.checkpoint_path} to start fresh"
        )
