"""Snakemake adapter, phase 4 (one work unit): the HR/LR pairs of the unit's subject groups and its store."""

from scisr.logs import log_to
from scisr.prepare.split import degrade_unit


def main(smk) -> None:
    settings = smk.params.settings
    with log_to(smk.log[0]):
        degrade_unit(
            smk.input.table,
            smk.input.images,
            smk.output.pairs,
            scale=smk.params.scale,
            seed=smk.params.seed,
            degradation=settings["degradation"],
            degradation_options=dict(settings["degradation_options"]),
            unit=smk.params.unit,
            units=smk.params.units,
            store_dir=smk.output.store,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
