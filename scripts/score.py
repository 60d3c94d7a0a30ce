"""Snakemake adapter, phase 7: per-image RMSE, PSNR and SSIM against HR."""

from pathlib import Path

from scisr.logs import log_to
from scisr.metrics import score_folder


def main(smk) -> None:
    with log_to(smk.log[0]):
        score_folder(
            smk.input.predictions,
            Path(smk.input.test) / "HR",
            smk.output.scores,
            border=smk.params.border,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
