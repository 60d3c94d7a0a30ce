"""Snakemake adapter, phase 2: decode every raw file into float32 frames + index.tsv."""

from pathlib import Path

from scisr.extract import extract_dataset
from scisr.io.isolated import IsolatedReader
from scisr.logs import log_to


def main(smk) -> None:
    manifest = Path(smk.input.manifest)
    reader = IsolatedReader(memory_mb=smk.params.reader_memory_mb, timeout_s=smk.params.reader_timeout_s)
    with log_to(smk.log[0]), reader:
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
            reader=reader,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
