"""Snakemake adapter, phase 2 (one work unit): decode the unit's raw files into candidate frames + its table."""

from pathlib import Path

from scisr.extract import extract_unit
from scisr.io.isolated import IsolatedReader
from scisr.logs import log_to


def main(smk) -> None:
    reader = IsolatedReader(memory_mb=smk.params.reader_memory_mb, timeout_s=smk.params.reader_timeout_s)
    with log_to(smk.log[0]), reader:
        extract_unit(
            Path(smk.input.manifest).parent,
            smk.input.manifest,
            smk.output.frames,
            smk.output.table,
            secret=smk.params.secret,
            key_map=smk.output.key_map,
            unit=smk.params.unit,
            units=smk.params.units,
            modalities=list(smk.params.modalities) or None,
            max_bytes=smk.params.max_bytes,
            frames=dict(smk.params.frames),
            reader=reader,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
