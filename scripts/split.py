"""Snakemake adapter, phase 4: subject-level split (a holdout or k folds) and HR/LR pairs."""

from scisr.logs import log_to
from scisr.prepare.split import split_dataset


def main(smk) -> None:
    settings = smk.params.settings
    with log_to(smk.log[0]):
        split_dataset(
            smk.input.index,
            smk.input.images,
            smk.params.parts,  # {fold: {train, val, test: folder}}: the rule's `parts` outputs
            smk.output.table,
            scale=smk.params.scale,
            fractions=dict(settings["fractions"]),
            seed=smk.params.seed,
            tile_size=settings["tile_size"],
            degradation=settings["degradation"],
            degradation_options=dict(settings["degradation_options"]),
            min_foreground=settings["min_foreground"],
            slab_gap=settings["slab_gap"],
            pointing_tolerance=settings["pointing_tolerance"],
            dataset=smk.wildcards.dataset,
            store_dir=smk.output.store,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
