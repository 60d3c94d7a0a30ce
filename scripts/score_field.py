"""Snakemake adapter, phase 7: the dataset's field metrics (MRI head mask; astronomy physical units, flux)."""

from scisr.logs import log_to
from scisr.metrics_field import score_field
from scisr.prepare.split import pair_dirs


def main(smk) -> None:
    with log_to(smk.log[0]):
        hr_dir, _ = pair_dirs(smk.input.test)
        score_field(
            smk.input.predictions,
            hr_dir,
            smk.output.scores,
            border=smk.params.border,
            field=smk.params.field,
            params_path=smk.input.get("params"),  # astronomy only
            split_path=smk.input.get("split"),
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
