"""Snakemake adapter, phase 7: per-image RMSE, PSNR and SSIM against HR."""

from scisr.logs import log_to
from scisr.metrics import score_folder
from scisr.prepare.split import pair_dirs


def main(smk) -> None:
    with log_to(smk.log[0]):
        hr_dir, _ = pair_dirs(smk.input.test)
        score_folder(smk.input.predictions, hr_dir, smk.output.scores, border=smk.params.border)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
