"""Snakemake adapter, phase 3 (one work unit): normalize the unit's subjects' frames to [0,1]."""

from scisr.logs import log_to
from scisr.prepare.normalize import normalize_dataset


def main(smk) -> None:
    with log_to(smk.log[0]):
        normalize_dataset(
            smk.input.index,
            smk.input.frames,
            smk.output.images,
            smk.output.params,
            scale=smk.params.scale,
            unit=smk.params.unit,
            units=smk.params.units,
            **smk.params.settings,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
