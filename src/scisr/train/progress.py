"""What changes while a model trains (iteration, stage, history, loss sums, seconds), saved in checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Progress:
    """Everything that changes while training, saved in checkpoints."""

    iteration: int = 0
    stage: str = "pixel"
    history: list[dict] = field(default_factory=list)
    sums: dict[str, float] = field(
        # loss sums since the last history row; "clipped" of "steps" optimizer steps had their gradient clipped
        default_factory=lambda: dict.fromkeys(["pixel", "adv", "perceptual", "d", "clipped", "steps"], 0.0)
    )
    count: int = 0
    elapsed: float = 0.0  # wall-clock seconds of all runs so far, up to the last `Trainer.tick`
    stage_seconds: dict[str, float] = field(default_factory=dict)  # the same, per stage

    def to_dict(self) -> dict:
        """Plain values for a checkpoint."""
        return {
            "iteration": self.iteration,
            "stage": self.stage,
            "history": self.history,
            "sums": self.sums,
            "count": self.count,
            "elapsed": self.elapsed,
            "stage_seconds": self.stage_seconds,
        }

    @classmethod
    def from_dict(cls, p: dict) -> Progress:
        """The progress of a checkpoint."""
        return cls(
            p["iteration"],
            p["stage"],
            list(p["history"]),
            dict(p["sums"]),
            p["count"],
            p["elapsed"],
            dict(p["stage_seconds"]),
        )
