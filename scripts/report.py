"""Snakemake adapter, phase 8: summary table, figures and index.html."""

from pathlib import Path

from scisr.logs import log_to
from scisr.report import build_report


def main(smk) -> None:
    p = smk.params
    scores = {m: {} for m in p.models}
    for path in smk.input.scores:
        scores[Path(path).parent.name][Path(path).stem] = path
    histories = {Path(h).parent.name: h for h in smk.input.histories}
    cards = {Path(c).parent.name: c for c in smk.input.cards}
    panels = {
        Path(test).parent.name: {
            "lr_dir": Path(test) / "LR",
            "hr_dir": Path(test) / "HR",
            "predictions": {},
        }
        for test in smk.input.test
    }
    for folder in map(Path, smk.input.predictions):
        panels[folder.name]["predictions"][folder.parent.name] = folder
    with log_to(smk.log[0]):
        build_report(
            scores,
            histories,
            panels,
            Path(smk.output.html).parent,
            baseline=p.baseline,
            generic=p.generic,
            model_cards=cards,
            title=p.title,
            scale=p.scale,
        )


if __name__ == "__main__":
    main(snakemake)  # noqa: F821 (injected by Snakemake)
