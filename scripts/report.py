"""Snakemake adapter, phase 8: summary table, statistics, figures and index.html."""

from scisr.logs import log_to
from scisr.report import build_report


def main(smk) -> None:
    with log_to(smk.log[0]):
        build_report(dict(smk.input.items()), dict(smk.output.items()), smk.params.settings)


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
