"""Snakemake adapter, phase 6: one model (or bicubic) on one dataset's test LR images."""

from scisr.infer import infer_folder
from scisr.logs import log_to
from scisr.prepare.split import pair_dirs


def main(smk) -> None:
    with log_to(smk.log[0]):
        _, lr_dir = pair_dirs(smk.input.test)
        infer_folder(
            lr_dir,
            smk.output.predictions,
            generator=smk.input.get("generator"),  # absent for the bicubic baseline
            card=smk.input.get("card"),
            scale=smk.params.scale,
            tile=smk.params.tile,
            overlap=smk.params.overlap,
            device=smk.params.device,
            threads=smk.threads,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
