"""Snakemake adapter, phase 5: train one model on its dataset's train split (in train.gpus processes)."""

from pathlib import Path

from scisr.logs import log_to
from scisr.train import run_training


def main(smk) -> None:
    with log_to(smk.log[0]):
        run_training(
            Path(smk.input.train).parent,
            Path(smk.output.generator).parent,
            smk.params.checkpoints,
            dict(smk.params.settings),
            name=smk.wildcards.trained,
            device=smk.params.device,
            threads=smk.threads,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
