"""Several processes for one model: a real 2-process DDP run on CPU (torchrun, gloo), resume, errors, GPU requests."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT
from train_helpers import SETTINGS, fit, job, make_split

from scisr.card import ModelCard
from scisr.train.checkpoint import load_checkpoint
from scisr.train.launcher import JOB_FILE
from scisr.train.settings import check_settings

# 6 pixel + 4 GAN iterations, a checkpoint every 3: the kill at 9 lands mid-GAN-stage
TINY = copy.deepcopy(SETTINGS) | {"ema": 0.9, "val_every": 3, "checkpoint_every": 3}
TINY["pixel"] = {"iterations": 6, "lr": 5e-4, "milestones": [4], "gamma": 0.5}
TINY["gan"] = TINY["gan"] | {"iterations": 4}
DDP = TINY | {"gpus": 2}
pytestmark = pytest.mark.slow  # torch.distributed.run with 2 processes per case
ROWS = [0, 3, 6, 9, 10]
KILL_AT = 9


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("split"))


@pytest.fixture(scope="module")
def ddp_run(split, tmp_path_factory) -> tuple[Path, str]:
    """An uninterrupted 2-process run through train (torchrun, gloo); its folder and forwarded output."""
    work = tmp_path_factory.mktemp("ddp")
    output = io.StringIO()
    with contextlib.redirect_stderr(output):  # as in a job, where the log file is sys.stderr
        fit(split, work / "out", work / "ckpt", DDP, threads=2)
    return work, output.getvalue()


def weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(out_dir / "generator.pt", weights_only=True)


def test_two_processes_write_what_one_process_writes(split, ddp_run, tmp_path):
    work, output = ddp_run
    fit(split, tmp_path / "out", tmp_path / "ckpt", TINY)  # gpus 1: in this process
    single, ddp = weights(tmp_path / "out"), weights(work / "out")
    assert ddp.keys() == single.keys()
    assert {k: v.shape for k, v in ddp.items()} == {k: v.shape for k, v in single.items()}
    assert all(torch.isfinite(v).all() for v in ddp.values())

    history = pd.read_csv(work / "out" / "history.tsv", sep="\t")
    expected = pd.read_csv(tmp_path / "out" / "history.tsv", sep="\t")
    assert history["iteration"].tolist() == expected["iteration"].tolist() == ROWS
    assert history["stage"].tolist() == expected["stage"].tolist() == ["init", "pixel", "pixel", "gan", "gan"]
    assert history.loc[0, "val_rmse"] == expected.loc[0, "val_rmse"]  # same initial weights, same val set
    assert history.loc[history.stage == "gan", ["loss_adv", "loss_d"]].notna().all().all()

    card = ModelCard.read(work / "out" / "model.yaml")
    assert card.gpus == 2 and card.training["settings"]["gpus"] == 2 and card.device == "cpu"
    assert card.threads == 1  # threads 2 shared by 2 processes
    assert card.training["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "batch_per_process": 2,
        "global_batch": 4,
    }
    assert card.iterations == {"pixel": 6, "gan": 4} and min(card.wall_seconds.values()) > 0
    single_card = ModelCard.read(tmp_path / "out" / "model.yaml")
    assert single_card.gpus == 1 and single_card.training["distributed"] is None

    state = load_checkpoint(work / "ckpt" / "last.pt")
    assert state["progress"]["iteration"] == ROWS[-1]
    ranks = state["sampler_rng_ranks"]
    assert len(ranks) == 2 and torch.equal(ranks[0], state["sampler_rng"]) and not torch.equal(*ranks)
    handed = json.loads((work / "ckpt" / JOB_FILE).read_text())
    assert handed["settings"] == DDP and handed["threads"] == 1
    assert handed["generator"] == str((work / "out" / "generator.pt").resolve())
    assert "process 0 of 2 (DistributedDataParallel, backend gloo), 2 of the 4 patches per step" in output


KILLED_WORKER = """
import os, sys
import torch
from scisr.train import trainer
from scisr.train.distributed import main
save = trainer.Trainer.save
def save_then_die(self):
    save(self)
    if self.progress.iteration == int(os.environ["KILL_AT"]):
        # the parameters, to compare the processes (buffers such as batch-norm statistics differ between
        # forward passes: DDP hands every process rank 0's at the start of each one)
        models = {k: dict(m.named_parameters()) for k, m in [("generator", self.generator),
                                                             ("discriminator", self.discriminator)]}
        torch.save(models, self.checkpoint_path.parent / f"models_rank{self.rank}.pt")
        os._exit(3)  # every process dies right after the checkpoint, as in a job killed at its time limit
trainer.Trainer.save = save_then_die
main(sys.argv[1:])
"""


def test_resume_under_ddp_is_bit_identical(split, ddp_run, tmp_path):
    work, _ = ddp_run
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "job.json").write_text(json.dumps(job(split, tmp_path / "out", ckpt, DDP).to_dict()))
    (tmp_path / "killed.py").write_text(textwrap.dedent(KILLED_WORKER))
    killed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=2",
            str(tmp_path / "killed.py"),
            str(ckpt / "job.json"),
        ],
        env=dict(os.environ, KILL_AT=str(KILL_AT), OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode != 0, killed.stderr[-3000:]
    assert load_checkpoint(ckpt / "last.pt")["progress"]["iteration"] == KILL_AT
    rank0, rank1 = (torch.load(ckpt / f"models_rank{r}.pt", weights_only=True) for r in (0, 1))
    for part in ("generator", "discriminator"):  # DDP kept both networks' weights identical across processes
        for key, value in rank0[part].items():
            assert torch.equal(rank1[part][key], value), f"{part} {key}"
    assert not (tmp_path / "out").exists()

    output = io.StringIO()
    with contextlib.redirect_stderr(output):
        fit(split, tmp_path / "out", ckpt, DDP, threads=2)
    assert f"resuming from iteration {KILL_AT}" in output.getvalue()
    for key, value in weights(work / "out").items():
        assert torch.equal(weights(tmp_path / "out")[key], value), key
    final, uninterrupted = load_checkpoint(ckpt / "last.pt"), load_checkpoint(work / "ckpt" / "last.pt")
    for part in ("generator", "discriminator", "ema"):
        for key, value in uninterrupted[part].items():
            assert torch.equal(final[part][key], value), f"{part} {key}"
    history = pd.read_csv(tmp_path / "out" / "history.tsv", sep="\t").drop(columns="seconds")
    expected = pd.read_csv(work / "out" / "history.tsv", sep="\t").drop(columns="seconds")
    pd.testing.assert_frame_equal(history, expected, check_exact=True)


def test_batch_size_not_divisible_by_gpus_is_refused_before_launch(split, tmp_path):
    settings = DDP | {"batch_size": 5}
    message = "batch_size 5 is not divisible by gpus 2: batch_size is the global batch"
    with pytest.raises(ValueError, match=message):
        check_settings(settings)
    with pytest.raises(ValueError, match=message):
        fit(split, tmp_path / "out", tmp_path / "ckpt", settings)
    assert not (tmp_path / "ckpt").exists()


def test_a_failing_process_is_reported_with_its_rank_and_exit_code(split, tmp_path):
    empty = tmp_path / "empty"  # found missing in the workers, which read the images
    shutil.copytree(split, empty)
    for png in (empty / "val" / "HR").glob("*.png"):
        png.unlink()
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(RuntimeError) as failure:
        fit(empty, tmp_path / "out", tmp_path / "ckpt", DDP, threads=2)
    assert re.search(
        r"training tiny in 2 processes \(torchrun\) failed: rank [01] exited with code 1 "
        r"\(FileNotFoundError: .*val/HR: no PNG images\)",
        str(failure.value),
    )
    assert not (tmp_path / "out").exists()


def dry_run(snakemake_exe: str, work: Path, override: dict) -> subprocess.CompletedProcess:
    if not (work / "config").exists():
        shutil.copytree(ROOT / "config", work / "config")
    (work / "override.yaml").write_text(yaml.safe_dump(override))
    command = [
        snakemake_exe,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--configfile",
        str(work / "config" / "config.yaml"),
        str(ROOT / "tests" / "data" / "tiny.yaml"),
        str(work / "override.yaml"),
        # more GPUs than any job asks for: a global limit below a job's request would cap it
        "--resources",
        "gpu=8",
        "--cores",
        "2",
        "--dry-run",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=work)


def test_train_rule_requests_compute_gpus_times_train_gpus(snakemake_exe, tmp_path):
    override = {
        "compute": {"gpus": 1},
        "train": {"gpus": 2},
        "models": {"astro": {"data": "astro", "train": {"gpus": 4}}},
    }
    result = dry_run(snakemake_exe, tmp_path, override)
    assert result.returncode == 0, result.stdout + result.stderr
    requested = {}
    for block in result.stdout.split("\nrule ")[1:]:
        if block.startswith("train:"):
            model = re.search(r"wildcards: trained=(\w+)", block)[1]
            requested[model] = int(re.search(r"resources: .*\bgpu=(\d+)", block)[1])
    # the fine-tuned models (config.yaml's mri_ft, astro_ft) take the global train.gpus too
    assert requested == {"generic": 2, "mri": 2, "astro": 4, "mri_ft": 2, "astro_ft": 2}

    override["train"]["batch_size"] = 6  # tiny.yaml's 4 is fine for 2 and 4 processes, 6 is not for 4
    result = dry_run(snakemake_exe, tmp_path, override)
    assert result.returncode != 0
    assert (
        "models.astro.train.batch_size 6 is not divisible by models.astro.train.gpus 4" in result.stdout + result.stderr
    )
