"""Snakemake adapter, phase 4 (plan): group, cut and assign every normalized image; write split.tsv."""

from scisr.logs import log_to
from scisr.prepare.split import plan_split


def main(smk) -> None:
    settings = smk.params.settings
    with log_to(smk.log[0]):
        plan_split(
            smk.input.index,
            smk.input.images,
            smk.output.table,
            folds=smk.params.folds,
            scale=smk.params.scale,
            fractions=dict(settings["fractions"]),
            seed=smk.params.seed,
            tile_size=settings["tile_size"],
            min_foreground=settings["min_foreground"],
            slab_gap=settings["slab_gap"],
            pointing_tolerance=settings["pointing_tolerance"],
            dataset=smk.wildcards.dataset,
            params_path=smk.input.params,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
