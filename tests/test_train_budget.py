"""Budget snapshots of one training run: the exported (EMA) weights at chosen iterations, with their cost."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from train_helpers import ESRGAN, job, make_split

from scisr.budget_scores import score_snapshots
from scisr.budgets import read_budget_table, snapshot_plan
from scisr.infer import infer_folder
from scisr.metrics import score_folder
from scisr.train import train

BUDGETS = (5, 25, 40, 100)  # 100 is past the 20 + 20 iterations: capped at 40


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("split"))


def snapshot_job(split: Path, work: Path, settings: dict, budgets=BUDGETS):
    weights = [str(work / "out" / "budget" / f"{b}.pt") for b in budgets]
    return dataclasses.replace(
        job(split, work / "out", work / "ckpt", settings),
        budgets=tuple(budgets),
        budget_weights=tuple(weights),
        budget_table=str(work / "out" / "budgets.tsv"),
    )


def load(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def run(split, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("budget")
    train(snapshot_job(split, work, ESRGAN))
    return work


def test_plan_caps_budgets_at_the_schedule():
    assert snapshot_plan([5, 25, 40, 100], 40) == {5: 5, 25: 25, 40: 40, 100: 40}
    with pytest.raises(ValueError, match="positive"):
        snapshot_plan([0], 40)


def test_final_snapshot_is_the_exported_generator_and_the_table_records_cost(run):
    out = run / "out"
    final = load(out / "generator.pt")
    for budget in (40, 100):
        snap = load(out / "budget" / f"{budget}.pt")
        assert snap.keys() == final.keys()
        assert all(torch.equal(snap[k], final[k]) for k in final), budget
    early = load(out / "budget" / "5.pt")
    assert not all(torch.equal(early[k], final[k]) for k in final)
    table = read_budget_table(out / "budgets.tsv")
    assert table["budget"].tolist() == [5, 25, 40, 100]
    assert table["iteration"].tolist() == [5, 25, 40, 40]
    assert table["stage"].tolist() == ["pixel", "gan", "gan", "gan"]
    seconds = table["seconds"].tolist()
    assert 0 < seconds[0] < seconds[1] < seconds[2] == seconds[3]
    history = json.loads((run / "ckpt" / "budget" / "snapshots.json").read_text())
    assert sorted(int(k) for k in history) == [5, 25, 40]


def test_snapshot_is_the_ema_a_shorter_run_would_export(run, split, tmp_path):
    """The snapshot at iteration 5 equals generator.pt of the same training stopped after 5 iterations."""
    short = copy.deepcopy(ESRGAN)
    short["pixel"] = short["pixel"] | {"iterations": 5, "milestones": []}
    short["gan"] = short["gan"] | {"iterations": 0}
    train(job(split, tmp_path / "out", tmp_path / "ckpt", short))
    expected = load(tmp_path / "out" / "generator.pt")
    snap = load(run / "out" / "budget" / "5.pt")
    for key, value in expected.items():
        torch.testing.assert_close(snap[key], value, rtol=1e-6, atol=1e-7, msg=key)


def test_other_budgets_retrain_from_scratch(run, split, tmp_path, caplog):
    """A checkpoint of a run without a snapshot at a budget it passed is not resumed (the snapshot can't be taken)."""
    shutil.copytree(run / "ckpt", tmp_path / "ckpt")
    with caplog.at_level(logging.INFO, logger="scisr.train.trainer"):
        train(snapshot_job(split, tmp_path, ESRGAN, budgets=(10,)))
    assert "starting fresh" in caplog.text
    assert read_budget_table(tmp_path / "out" / "budgets.tsv")["iteration"].tolist() == [10]
    assert sorted(p.name for p in (tmp_path / "ckpt" / "budget").glob("*.pt")) == ["10.pt"]


def test_snapshot_scores_are_those_of_the_infer_and_score_phases(run, split, tmp_path):
    """One budget job per model and test set gives each snapshot the scores infer + score would give it."""
    budgets = (5, 25)
    weights = [run / "out" / "budget" / f"{b}.pt" for b in budgets]
    card = run / "out" / "model.yaml"
    outputs = [tmp_path / "scores" / f"{b}.tsv" for b in budgets]
    settings = dict(scale=4, tile=8, overlap=2, device="cpu", threads=1)
    score_snapshots(weights, card, split / "val" / "LR", split / "val" / "HR", outputs, border=4, **settings)
    tables = [pd.read_csv(p, sep="\t") for p in outputs]
    for generator, table in zip(weights, tables, strict=True):
        infer_folder(split / "val" / "LR", tmp_path / "pred", generator=generator, card=card, **settings)
        expected = score_folder(tmp_path / "pred", split / "val" / "HR", tmp_path / "expected.tsv", border=4)
        pd.testing.assert_frame_equal(table, expected)
    assert not tables[0]["rmse"].equals(tables[1]["rmse"])  # two different snapshots were scored
    with pytest.raises(ValueError, match="2 budget snapshots but 1 score tables"):
        score_snapshots(weights, card, split / "val" / "LR", split / "val" / "HR", outputs[:1], border=4, **settings)
