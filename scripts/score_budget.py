"""Snakemake adapter, budget crossover: every snapshot of one model run and scored on one test set."""

from scisr.budget_scores import score_snapshots
from scisr.logs import log_to
from scisr.prepare.split import pair_dirs


def main(smk) -> None:
    with log_to(smk.log[0]):
        hr_dir, lr_dir = pair_dirs(smk.input.test)
        score_snapshots(
            list(smk.input.generators),
            smk.input.card,
            lr_dir,
            hr_dir,
            list(smk.output.scores),
            scale=smk.params.scale,
            tile=smk.params.tile,
            overlap=smk.params.overlap,
            device=smk.params.device,
            threads=smk.threads,
            border=smk.params.border,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
