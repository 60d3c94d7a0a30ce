"""Snakemake adapter, phase 6: one model (or bicubic) on one dataset's test LR images."""

from pathlib import Path

from scisr.infer import infer_folder
from scisr.logs import log_to


def main(smk) -> None:
    with log_to(smk.log[0]):
        infer_folder(
            smk.params.model,
            Path(smk.input.test) / "LR",
            smk.output.predictions,
            scale=smk.params.scale,
            tile=smk.params.tile,
            overlap=smk.params.overlap,
            device=smk.params.device,
            threads=smk.threads,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
