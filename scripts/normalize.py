"""Snakemake adapter, phase 3: normalize every extracted frame to [0,1]."""

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
            **smk.params.settings,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
