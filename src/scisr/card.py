"""The model card (`model.yaml`): the one reader and writer of what a model is and what it cost.

Train and import write it; infer, upscale, the report and the CLI read it, only through `ModelCard`.
No torch import: the report's environment reads cards without torch.

Fields (format 1):

    format          int    this file's format version (FORMAT); `read` refuses others
    name            str    the model's name in the study (`generic`, `mri`, `mri_ft`, `pretrained`, ...)
    source          str    "trained" (by SciSR's trainer) or "imported" (weights converted from a file)
    arch            str    generator architecture, a name in scisr.models.GENERATORS
    args            dict   every builder argument of the generator (in_channels, out_channels, scale included)
    scale           int    upscaling factor
    channels        int    channels of the data the model takes and returns (after any channel adapter)
    parameters      int    number of generator parameters
    iterations      dict   training iterations per stage, e.g. {pixel: 1200, gan: 100} (empty when imported)
    wall_seconds    dict   training wall-clock seconds per stage (validation included), same keys
    device          str    torch device it was trained on ("cpu", "cuda:0"), "" when imported
    device_name     str    the processor or GPU model it was trained on
    threads         int    CPU threads of each training process
    gpus            int    training processes (DistributedDataParallel) or 1
    training_data   dict   dataset, fold and folds (cross-validation fold of that dataset, 1 of 1 for a holdout),
                           train_images, val_images, train_hr_sha256 (empty when imported)
    normalization   dict   the normalize settings of its training data (low_percentile, high_percentile,
                           stretch, asinh_a): how inputs must be mapped to [0, 1] before the model sees them
    init_from       str    the model whose weights training started from (fine-tuning), or null
    origin          dict   where imported weights came from: file (names, no paths), sha256 (per file), format,
                           licence, package/version/model (packaged weights), input (empty when trained)
    training        dict   everything else about training (settings, ema, losses, precision, final validation)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

FORMAT = 1
SOURCES = ("trained", "imported")


class CardError(ValueError):
    """A model card that is missing, of another format, or lacks a field."""


@dataclass
class ModelCard:
    """What a model folder holds: architecture, data, normalization and training cost."""

    name: str
    arch: str
    args: dict
    scale: int
    channels: int
    parameters: int
    source: str = "trained"
    iterations: dict[str, int] = field(default_factory=dict)
    wall_seconds: dict[str, float] = field(default_factory=dict)
    device: str = ""
    device_name: str = ""
    threads: int = 1
    gpus: int = 1
    training_data: dict = field(default_factory=dict)
    normalization: dict = field(default_factory=dict)
    init_from: str | None = None
    origin: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    format: int = FORMAT

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise CardError(f"model card {self.name!r}: source {self.source!r}; expected one of {', '.join(SOURCES)}")

    @property
    def total_iterations(self) -> int:
        """Training iterations over all stages."""
        return int(sum(self.iterations.values()))

    @property
    def total_wall_seconds(self) -> float:
        """Training wall-clock seconds over all stages."""
        return float(sum(self.wall_seconds.values()))

    def to_dict(self) -> dict:
        """The card as plain YAML-safe types, `format` first."""
        data = dataclasses.asdict(self)
        return {"format": data.pop("format"), **data}

    def write(self, path: str | os.PathLike) -> None:
        """Write the card as YAML, atomically."""
        from scisr.io.files import write_text_atomic

        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, data: dict, where: str = "model card") -> ModelCard:
        """Build a card from a mapping, naming the missing or unknown field."""
        if not isinstance(data, dict):
            raise CardError(f"{where}: expected a mapping, got {type(data).__name__}")
        version = data.get("format")
        if version != FORMAT:
            raise CardError(
                f"{where}: card format {version!r}, this SciSR reads format {FORMAT}; "
                "rebuild the model (delete it and rerun its train or import rule)"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise CardError(f"{where}: unknown field(s) {', '.join(unknown)}")
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise CardError(f"{where}: missing field(s) {', '.join(missing)}")
        return cls(**data)

    @classmethod
    def read(cls, path: str | os.PathLike) -> ModelCard:
        """Read `model.yaml` (a file, or the model folder holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / "model.yaml"
        if not path.is_file():
            raise CardError(f"{path}: no model card; is {path.parent} a trained or imported model folder?")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise CardError(f"{path}: not valid YAML ({error})") from None
        return cls.from_dict(data, str(path))
