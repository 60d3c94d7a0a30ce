"""Snakemake adapter, phase 5 (imported models): convert published weights into generator.pt and model.yaml."""

from scisr.logs import log_to
from scisr.models.importer import import_weights


def main(smk) -> None:
    with log_to(smk.log[0]):
        import_weights(
            smk.params.source,  # a packaged model name, or the weight files (the rule's inputs)
            smk.output.generator,
            smk.output.card,
            name=smk.wildcards.imported,
            licence=smk.params.licence,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
