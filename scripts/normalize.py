"""Snakemake adapter, phase 3 (gather): the units' normalized images and params -> the dataset's."""

from scisr.logs import log_to
from scisr.prepare.normalize import gather_normalized


def main(smk) -> None:
    with log_to(smk.log[0]):
        gather_normalized(
            smk.input.index,
            list(zip(smk.input.params, smk.input.images)),
            smk.output.images,
            smk.output.params,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
