"""Snakemake adapter, phase 2 (gather): the units' candidates -> the dataset's index.tsv, frames and key map."""

from scisr.extract_gather import gather_units
from scisr.logs import log_to


def main(smk) -> None:
    with log_to(smk.log[0]):
        gather_units(
            list(zip(smk.input.tables, smk.input.frames)),
            smk.output.frames,
            smk.output.index,
            dataset=smk.wildcards.dataset,
            key_maps=list(smk.input.key_maps),
            key_map=smk.output.key_map,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
