"""Budget snapshots: the exported generator (EMA when enabled) saved at chosen iterations of one training run.

The budget crossover compares models at equal training budgets without training each budget separately:
a `BudgetSnapshots` hook of the `Trainer` saves the weights `generator.pt` would hold if training stopped at
that iteration, with the wall-clock seconds so far, into the checkpoint folder (outside the rule's outputs, so
a killed run keeps them and resumes). `export` copies them to the rule's outputs and writes budgets.tsv.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import torch

from scisr.budgets import snapshot_plan, write_budget_table
from scisr.io.files import atomic_path, write_text_atomic
from scisr.train.start import exported_weights

log = logging.getLogger(__name__)

FOLDER = "budget"  # inside the checkpoint folder
RECORD = "snapshots.json"


class BudgetSnapshots:
    """Save the exported generator at each of `iterations`; a Trainer calls it after every iteration."""

    def __init__(self, checkpoint_dir: str | os.PathLike, iterations: set[int] | list[int]) -> None:
        self.folder = Path(checkpoint_dir) / FOLDER
        self.iterations = {int(i) for i in iterations}
        self.records: dict[int, dict] = {}

    def _weights(self, iteration: int) -> Path:
        return self.folder / f"{iteration}.pt"

    def start(self, iteration: int) -> None:
        """Keep the snapshots of a resumed run up to `iteration`; a fresh run (0) drops every old one."""
        path = self.folder / RECORD
        saved = json.loads(path.read_text()) if iteration > 0 and path.is_file() else {}
        self.records = {int(k): v for k, v in saved.items() if int(k) <= iteration and self._weights(int(k)).is_file()}
        if iteration == 0 and self.folder.is_dir():
            shutil.rmtree(self.folder)

    def __call__(self, trainer) -> None:
        """After an iteration: snapshot when it is one of ours (rank 0 writes)."""
        p = trainer.progress
        if p.iteration not in self.iterations or not trainer.is_main:
            return
        trainer.tick()
        weights = exported_weights(trainer.eval_model)  # as generator.pt: without a channel adapter
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._weights(p.iteration)) as tmp:
            torch.save(weights, tmp)
        self.records[p.iteration] = {"stage": p.stage, "seconds": round(p.elapsed, 3)}
        write_text_atomic(self.folder / RECORD, json.dumps(self.records, sort_keys=True))
        log.info("%s: budget snapshot at iteration %d (%.1f s of training)", trainer.name, p.iteration, p.elapsed)

    def export(
        self, budgets: list[int], total: int, weights: list[str | os.PathLike], table: str | os.PathLike
    ) -> None:
        """Copy each budget's snapshot to its output path (same order as `budgets`) and write budgets.tsv."""
        if len(budgets) != len(weights):
            raise ValueError(f"{len(budgets)} budgets but {len(weights)} snapshot output paths")
        rows = []
        for budget, out in zip(budgets, weights, strict=True):
            iteration = snapshot_plan([budget], total)[int(budget)]
            source = self._weights(iteration)
            if iteration not in self.records or not source.is_file():
                raise RuntimeError(
                    f"{source}: the budget snapshot at iteration {iteration} is missing; delete "
                    f"{self.folder.parent} to train this model again from the start"
                )
            with atomic_path(Path(out)) as tmp:
                shutil.copyfile(source, tmp)
            rows.append({"budget": int(budget), "iteration": iteration, **self.records[iteration]})
        write_budget_table(rows, table)
