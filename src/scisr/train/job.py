"""One model's training job: the paths the train rule declares, the parsed settings, where it runs.

The adapter (scripts/train.py) or a user builds a `TrainJob` once, with settings parsed once
(`Settings.from_dict`). A job that crosses a process boundary (the torchrun workers of scisr.train.launcher)
travels as JSON through `to_dict` / `from_dict`, the one place it is serialised.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from scisr.train.settings import Settings

PathLike = str | os.PathLike
PATH = {"path": True}  # field metadata: the field holds a path (or a tuple of paths), made absolute for workers


@dataclass(frozen=True)
class TrainJob:
    """One model's training: the rule's input and output paths, its settings, and where it runs.

    train_dir, val_dir   split parts holding HR/ and LR/ (scisr.prepare.split.pair_dirs)
    generator, history, card   the output files: generator.pt, history.tsv, model.yaml
    checkpoint_dir       where last.pt lives between runs (outside the outputs, so a killed job resumes)
    settings             the parsed training settings (scisr.train.settings.Settings)
    name, dataset        the model's name and the name of the dataset it learns from (for the model card)
    fold, folds          which cross-validation fold of that dataset it learns from, of how many (1 of 1: a
                         single holdout; for the model card)
    store                the dataset's training store from the split phase (scisr.prepare.store; it holds the
                         pairs of train_dir and val_dir); None writes one for the two parts into checkpoint_dir
    normalization        the normalize settings of that dataset (for the model card)
    device, threads      'cpu', 'cuda' or 'cuda:N'; CPU threads (of all processes together)
    budgets, budget_weights, budget_table   study.budgets (iterations), the snapshot output path of each (same
                         order) and budgets.tsv (scisr.train.budget; none when budget_table is empty)
    init_generator, init_card   fine-tuning: the generator.pt and model.yaml of the model training starts from
                         (scisr.train.start); None trains from scratch
    """

    train_dir: PathLike = field(metadata=PATH)
    val_dir: PathLike = field(metadata=PATH)
    generator: PathLike = field(metadata=PATH)
    history: PathLike = field(metadata=PATH)
    card: PathLike = field(metadata=PATH)
    checkpoint_dir: PathLike = field(metadata=PATH)
    settings: Settings
    name: str
    dataset: str
    normalization: dict
    device: str
    threads: int
    budgets: tuple[int, ...] = ()
    budget_weights: tuple[PathLike, ...] = field(default=(), metadata=PATH)
    budget_table: PathLike = field(default="", metadata=PATH)
    init_generator: PathLike | None = field(default=None, metadata=PATH)
    init_card: PathLike | None = field(default=None, metadata=PATH)
    fold: int = 1
    folds: int = 1
    store: PathLike | None = field(default=None, metadata=PATH)

    def __post_init__(self) -> None:
        if not isinstance(self.settings, Settings):
            raise TypeError(
                f"training {self.name}: settings must be parsed: pass Settings.from_dict(settings), "
                f"not a {type(self.settings).__name__}"
            )

    def absolute(self) -> TrainJob:
        """The same job with every path absolute (empty and None left as they are), for another working folder."""

        def resolve(value):
            if isinstance(value, tuple):
                return tuple(resolve(v) for v in value)
            return str(Path(value).resolve()) if value not in (None, "") else value

        return dataclasses.replace(
            self, **{f.name: resolve(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata.get("path")}
        )

    def to_dict(self) -> dict:
        """The job as plain JSON values (paths as strings, settings as the validated dict they were parsed from)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "settings":
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = [str(v) if f.metadata.get("path") else v for v in value]
            elif f.metadata.get("path") and value is not None:
                value = str(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> TrainJob:
        """A job written by `to_dict`; its settings parsed (and checked) here."""
        tuples = {"budgets", "budget_weights"}
        return cls(
            **{
                key: Settings.from_dict(value) if key == "settings" else tuple(value) if key in tuples else value
                for key, value in data.items()
            }
        )
