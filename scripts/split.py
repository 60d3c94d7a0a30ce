"""Snakemake adapter, phase 4 (gather): every unit's pairs into its folds' parts; the units' stores joined."""

from scisr.logs import log_to
from scisr.prepare.split import gather_split


def main(smk) -> None:
    with log_to(smk.log[0]):
        gather_split(
            smk.input.table,
            list(zip(smk.input.pairs, smk.input.stores)),
            smk.params.parts,  # {fold: {train, val, test: folder}}: the rule's `parts` outputs
            store_dir=smk.output.store,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
