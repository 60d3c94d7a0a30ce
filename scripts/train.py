"""Snakemake adapter, phase 5: train one model on its dataset's train split (in train.gpus processes)."""

from scisr.logs import log_to
from scisr.train import Settings, TrainJob, train


def main(smk) -> None:
    with log_to(smk.log[0]):
        train(
            TrainJob(
                train_dir=smk.input.train,
                val_dir=smk.input.val,
                generator=smk.output.generator,
                history=smk.output.history,
                card=smk.output.card,
                checkpoint_dir=smk.params.checkpoints,
                settings=Settings.from_dict(dict(smk.params.settings)),  # parsed once, here
                name=smk.wildcards.trained,
                dataset=smk.params.data,
                fold=int(smk.wildcards.fold),
                folds=smk.params.folds,
                store=smk.input.store,
                normalization=dict(smk.params.normalization),
                device=smk.params.device,
                threads=smk.threads,
                budgets=tuple(smk.params.budgets),
                budget_weights=tuple(smk.output.budget),
                budget_table=smk.output.budgets,
                init_generator=smk.input.get("init_generator"),  # absent when training from scratch
                init_card=smk.input.get("init_card"),
            )
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
