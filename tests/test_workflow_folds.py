"""Subject-level cross-validation end to end: 9 synthetic MRI subjects in 3 folds (conftest.folds_study).

Every subject is tested exactly once, by model instances that never saw it; the statistics pool all subjects;
the primary family has the documented members; per-fold files are Snakemake targets (changing `folds`
re-splits and retrains, a report setting reruns the report only).
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from conftest import FOLDS_K, FOLDS_SUBJECTS, FoldsStudy

from scisr.card import ModelCard
from scisr.io.hashing import folder_sha256
from scisr.prepare.split import pair_dirs, read_split_table

pytestmark = pytest.mark.workflow
FOLDED = ["mri", "mri_ft"]  # trained on the cross-validated dataset: one instance per fold


def _planned(study: FoldsStudy, *targets: str, config: dict | None = None) -> str:
    result = study.run("--dry-run", "--forceall", *targets, config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_every_subject_is_tested_once_by_models_that_never_saw_it(folds_study: FoldsStudy) -> None:
    work = folds_study.work
    split = read_split_table(work / "results/split/mri/split.tsv")
    assert sorted(set(split["fold"])) == list(range(1, FOLDS_K + 1))
    tested = split[split["split"] == "test"]
    assert tested["id"].is_unique and tested["group"].nunique() == FOLDS_SUBJECTS
    assert tested.groupby("group")["fold"].nunique().eq(1).all()  # a subject's slices all sit in one fold
    for fold in range(1, FOLDS_K + 1):
        rows = split[split["fold"] == fold]
        test_ids = set(rows.loc[rows["split"] == "test", "id"])
        test_groups = set(rows.loc[rows["split"] == "test", "group"])
        assert not test_groups & set(rows.loc[rows["split"].isin(["train", "val"]), "group"])
        hr_train, _ = pair_dirs(work / f"results/split/mri/fold{fold}/train")
        assert not test_ids & {p.stem for p in hr_train.glob("*.png")}
        for model in FOLDED:
            # the instance of this fold learnt from this fold's training folder, nothing else
            card = ModelCard.read(work / f"results/models/{model}/fold{fold}/model.yaml")
            assert (card.training_data["fold"], card.training_data["folds"]) == (fold, FOLDS_K)
            assert card.training_data["train_hr_sha256"] == folder_sha256(hr_train)
        for model in ("bicubic", "generic", "pretrained", *FOLDED):
            scores = pd.read_csv(work / f"results/score/{model}/mri/fold{fold}.tsv", sep="\t", dtype={"image_id": str})
            assert set(scores["image_id"]) == test_ids  # each fold scored on its own test subjects only
    # and the plan wires fold i's predictions to instance i (the generic model's one instance scores all folds)
    plan = _planned(
        folds_study, "results/infer/mri/mri/fold2", "results/infer/mri_ft/mri/fold3", "results/infer/generic/mri/fold2"
    )
    assert "results/models/mri/fold2/generator.pt" in plan and "results/models/mri/fold1/generator.pt" not in plan
    assert "results/models/mri_ft/fold3/generator.pt" in plan
    assert not re.search(r"results/models/generic/fold[23]", plan)  # trained once, on its photographs
    ft = ModelCard.read(work / "results/models/mri_ft/fold2/model.yaml")
    assert ft.init_from == "generic" and ft.training["init"]["fold"] == 1
    assert not (work / "results/models/generic/fold2").exists()


def test_statistics_pool_every_subject_under_the_declared_plan(folds_study: FoldsStudy) -> None:
    report = folds_study.work / "results/report"
    stats = pd.read_csv(report / "stats.tsv", sep="\t")
    primary = stats[stats["family"] == "primary"]
    # the documented primary family: on mri, its own model, its fine-tuned model and the imported one vs generic
    assert sorted(primary["model"]) == ["mri", "mri_ft", "pretrained"]
    assert (primary["reference"] == "generic").all() and (primary["metric"] == "rmse").all()
    assert (primary["family_size"] == 3).all() and (primary["n_subjects"] == FOLDS_SUBJECTS).all()
    n_test = len(pd.read_csv(folds_study.work / "results/split/mri/split.tsv", sep="\t").query("split == 'test'"))
    assert (primary["n_images"] == n_test).all()
    # 9 subjects in a family of 3: 3 x 2/2^9 = 0.012 can be reached, so verdicts are real ones
    assert (primary["p_min_reachable"] < 0.05).all()
    assert set(primary["verdict"]) <= {"better", "worse", "no significant difference"}
    assert (stats.loc[stats["family"] != "primary", "family"].str.startswith("secondary: ")).all()
    folds = pd.read_csv(report / "folds.tsv", sep="\t")
    assert set(folds["fold"]) == set(range(1, FOLDS_K + 1)) and len(folds) == 3 * FOLDS_K
    assert folds.groupby("model")["n_subjects"].sum().eq(FOLDS_SUBJECTS).all()
    costs = pd.read_csv(report / "costs.tsv", sep="\t", dtype={"fold": str})
    totals = costs[costs["stage"] == "total"]
    assert sorted(totals.loc[totals["model"] == "mri", "fold"]) == ["1", "2", "3", "all"]
    every = totals[(totals["model"] == "mri") & (totals["fold"] == "all")].iloc[0]
    assert every["seconds"] == pytest.approx(
        totals[(totals["model"] == "mri") & (totals["fold"] != "all")]["seconds"].sum()
    )
    assert list(totals.loc[totals["model"] == "generic", "fold"]) == ["1"]
    budget = pd.read_csv(report / "budget.tsv", sep="\t")
    assert set(budget.loc[budget["model"] == "mri", "n_subjects"]) == {FOLDS_SUBJECTS}
    html = (report / "index.html").read_text()
    assert html.index("Statistical plan") < html.index("<h2>Answer</h2>") < html.index("Scores per dataset")
    assert f"{FOLDS_K}-fold cross-validation over subjects on mri" in html
    assert "Primary family (3 comparisons, on RMSE)" in html and "Cross-validation folds" in html
    assert "(3 runs)" in html  # the training cost of all k runs


def _jobs(study: FoldsStudy, config: dict) -> dict[str, int]:
    """Jobs per rule that a dry run with `config` merged on top would execute (not counting `all`)."""
    result = study.run("--dry-run", "--quiet", "rules", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        p[0]: int(p[1])
        for p in (line.split() for line in result.stdout.splitlines())
        if len(p) == 2 and p[1].isdigit() and p[0] not in ("all", "total")
    }


def test_changing_folds_resplits_and_retrains_and_a_report_setting_does_not(folds_study: FoldsStudy) -> None:
    assert _jobs(folds_study, {"report": {"title": "Another title"}}) == {"report": 1}
    counts = _jobs(folds_study, {"study": {"folds": 4}})
    # mri is split again into 4 folds and both of its models retrained per fold; generic's holdout stays
    assert counts["split_folds"] == 1 and "split" not in counts and counts["train"] == 2 * 4
    assert "download" not in counts and "extract" not in counts
