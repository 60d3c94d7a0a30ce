"""Snakemake adapter, phase 2: decode every raw file into float32 frames + index.tsv."""

from pathlib import Path

from scisr.extract import extract_dataset
from scisr.logs import log_to


def main(smk) -> None:
    manifest = Path(smk.input.manifest)
    with log_to(smk.log[0]):
        extract_dataset(
            manifest.parent,
            manifest,
            smk.output.frames,
            smk.output.index,
            secret=smk.params.secret,
            key_map=smk.output.key_map,
            dataset=smk.wildcards.dataset,
            modalities=list(smk.params.modalities) or None,
            max_bytes=smk.params.max_bytes,
            frames=dict(smk.params.frames),
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
