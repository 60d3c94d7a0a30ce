"""Snakemake adapter, phase 1: fetch one dataset's source into resources/raw/<dataset>/."""

from pathlib import Path

from scisr.logs import log_to
from scisr.sources import fetch


def main(smk) -> None:
    manifest = Path(smk.output.manifest)
    with log_to(smk.log[0]):
        fetch(dict(smk.params.source), manifest.parent, manifest, cache_dir=smk.params.cache)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
