"""The train phase's `budgets.tsv`: the training cost at each budget snapshot; its one writer and reader.

One row per requested budget (study.budgets): `budget` (the iterations asked for), `iteration` (where the
snapshot was taken: the budget, or the model's last iteration when its schedule is shorter), `stage` (the
training stage at that iteration) and `seconds` (training wall-clock seconds up to the snapshot, validation
included, summed over resumed runs). No torch import: the report reads it.
"""

from __future__ import annotations

import os

import pandas as pd

from scisr.io.files import write_text_atomic

BUDGET_COLUMNS = ["budget", "iteration", "stage", "seconds"]


def snapshot_plan(budgets: list[int] | tuple[int, ...], total: int) -> dict[int, int]:
    """Map each budget to the iteration its snapshot is taken at: the budget, capped at `total`."""
    if total < 1:
        raise ValueError(f"a training schedule of {total} iterations has no snapshots to take")
    bad = [b for b in budgets if int(b) < 1]
    if bad:
        raise ValueError(f"study.budgets must be positive iteration counts, got {bad}")
    return {int(b): min(int(b), int(total)) for b in budgets}


def write_budget_table(rows: list[dict], path: str | os.PathLike) -> pd.DataFrame:
    """Write budget rows (sorted by budget) atomically; return the table written."""
    table = pd.DataFrame(rows, columns=BUDGET_COLUMNS).sort_values("budget", ignore_index=True)
    table = table.astype({"budget": "int64", "iteration": "int64", "seconds": "float64"})
    write_text_atomic(path, table.to_csv(sep="\t", index=False, lineterminator="\n"))
    return table


def read_budget_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a budgets.tsv written by `write_budget_table`."""
    table = pd.read_csv(path, sep="\t", dtype={"stage": str})
    missing = set(BUDGET_COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; rerun the model's train rule")
    return table[BUDGET_COLUMNS].astype({"budget": "int64", "iteration": "int64", "seconds": "float64"})
