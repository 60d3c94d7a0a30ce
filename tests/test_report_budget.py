"""The budget crossover (points, paired differences, the statement), the cost tables from benchmark files, and the
field-metric statistics: on constructed inputs with known answers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scisr.budgets import write_budget_table
from scisr.card import ModelCard
from scisr.io.files import write_png16
from scisr.report import budget, costs, field, stats


def _diffs(values: dict[int, tuple[float, float, float]], n: int = 8) -> pd.DataFrame:
    """Rows of one model vs generic: budget -> (mean_diff, ci_low, ci_high)."""
    return pd.DataFrame(
        [
            {
                "dataset": "mri",
                "model": "mri",
                "reference": "generic",
                "budget": b,
                "metric": "rmse",
                "n_subjects": n,
                "mean_diff": m,
                "ci_low": lo,
                "ci_high": hi,
            }
            for b, (m, lo, hi) in values.items()
        ]
    )


def test_crossover_is_the_smallest_budget_with_the_ci_below_zero():
    diffs = _diffs(
        {
            300: (0.002, 0.001, 0.003),
            600: (-0.001, -0.002, 0.0005),
            1200: (-0.003, -0.004, -0.002),
            1300: (-0.004, -0.005, -0.003),
        }
    )
    assert budget.crossover(diffs) == (1200, "crossing")
    points = pd.DataFrame(
        {
            "dataset": "mri",
            "budget": 1200,
            "metric": "rmse",
            "model": ["mri", "generic"],
            "cumulative_seconds": [90.0, 100.0],
        }
    )
    text = budget.crossover_statement("mri", "mri", "generic", diffs, points)
    assert text.startswith("mri: crossover at 1200 iterations")
    assert "\u22120.0030" in text and "8 subjects" in text and "90 s (mri) vs 100 s (generic)" in text


def test_no_crossover_and_too_few_subjects():
    diffs = _diffs({300: (0.002, 0.001, 0.003), 600: (-0.001, -0.002, 0.0005)})
    assert budget.crossover(diffs) == (None, "none")
    text = budget.crossover_statement("mri", "mri", "generic", diffs, pd.DataFrame())
    assert text.startswith("mri: no crossover in the range 300\u2013600 iterations")
    # a CI below zero with too few subjects is no crossover
    few = _diffs({300: (-0.01, -0.02, -0.005)}, n=stats.MIN_SUBJECTS - 1)
    assert budget.crossover(few) == (None, "few")
    assert "too few test subjects" in budget.crossover_statement("mri", "mri", "generic", few, pd.DataFrame())
    # higher is better for PSNR: the CI must lie above zero
    psnr = _diffs({300: (0.5, 0.2, 0.8)}).assign(metric="psnr")
    assert budget.crossover(psnr, "psnr") == (300, "crossing")


def _card(path: Path, name: str, **extra) -> Path:
    fields = dict(
        name=name,
        arch="srresnet",
        args={},
        scale=4,
        channels=1,
        parameters=1000,
        iterations={"pixel": 100, "gan": 20},
        wall_seconds={"pixel": 50.0, "gan": 30.0},
        device="cpu",
        device_name="Test CPU",
        threads=2,
        training={"settings": {"batch_size": 16}},
    )
    ModelCard(**(fields | extra)).write(path)
    return path


def test_budget_points_pair_snapshots_and_add_the_final_model(tmp_path):
    ids = [f"s{i}_t{j}" for i in range(8) for j in range(2)]  # 8 subjects of 2 tiles each
    subjects = pd.DataFrame(
        {
            "dataset": "mri",
            "image_id": ids,
            "subject_id": [i.split("_")[0] for i in ids],
            "split": "test",
            "in_train": False,
        }
    )
    rng = np.random.default_rng(0)
    base = 0.05 + 0.01 * rng.random(len(ids))
    # generic improves slowly; mri is worse at 50 iterations and clearly better from 100 on
    shift = {("generic", 50): -0.001, ("generic", 100): -0.002, ("mri", 50): 0.004, ("mri", 100): -0.006}
    scores, tables, cards = {}, {}, {}
    for model in ("generic", "mri"):
        for b in (50, 100):
            path = tmp_path / f"{model}_{b}.tsv"
            pd.DataFrame({"image_id": ids, "rmse": base + shift[(model, b)], "psnr": 20.0, "ssim": 0.9}).to_csv(
                path, sep="\t", index=False
            )
            scores.setdefault(model, {})[b] = path
        tables[model] = tmp_path / f"{model}_budgets.tsv"
        write_budget_table(
            [
                {"budget": 50, "iteration": 50, "stage": "pixel", "seconds": 20.0},
                {"budget": 100, "iteration": 100, "stage": "pixel", "seconds": 40.0},
            ],
            tables[model],
        )
        cards[model] = _card(tmp_path / f"{model}.yaml", model)
    final = pd.DataFrame(
        [
            {"model": m, "dataset": "mri", "image_id": i, "rmse": r - 0.007 * (m == "mri"), "psnr": 20.0, "ssim": 0.9}
            for m in ("generic", "mri")
            for i, r in zip(ids, base)
        ]
    )
    points, diffs = budget.budget_points({"mri": scores}, tables, cards, final, subjects)  # leaves: fold 1
    rmse = points[points["metric"] == "rmse"]
    assert sorted(set(rmse["budget"])) == [50, 100, 120]  # the final model at its 120 iterations
    row = rmse[(rmse["model"] == "mri") & (rmse["budget"] == 100)].iloc[0]
    assert row["n_subjects"] == 8 and row["mean"] == pytest.approx((base - 0.006).mean())
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert row["device_hours"] == pytest.approx(40.0 * 2 / 3600) and row["device_hours_unit"] == "CPU-hours"
    assert rmse[(rmse["model"] == "mri") & (rmse["budget"] == 120)]["seconds"].iloc[0] == pytest.approx(80.0)
    d = diffs[diffs["metric"] == "rmse"].set_index("budget")
    assert d.loc[50, "mean_diff"] == pytest.approx(0.005) and d.loc[100, "mean_diff"] == pytest.approx(-0.004)
    assert budget.crossover(diffs[diffs["model"] == "mri"]) == (100, "crossing")


def test_fine_tuned_cost_includes_its_initial_model(tmp_path):
    cards = {
        "generic": {1: ModelCard.read(_card(tmp_path / "g.yaml", "generic"))},
        "mri_ft": {
            1: ModelCard.read(
                _card(tmp_path / "f.yaml", "mri_ft", init_from="generic", wall_seconds={"pixel": 5.0, "gan": 5.0})
            )
        },
    }
    assert costs.cumulative_seconds("mri_ft", cards) == pytest.approx(90.0)
    assert costs.cumulative_seconds("generic", cards) == pytest.approx(80.0)


def test_cross_validated_costs_per_fold_and_summed(tmp_path):
    """Three fold runs of a fine-tuned model: costs.tsv has each fold's rows and `all` rows summing them; the
    cumulative cost counts the one generic run they all started from once."""
    generic = _card(tmp_path / "g.yaml", "generic")
    folds = {
        f: _card(
            tmp_path / f"ft{f}.yaml",
            "mri_ft",
            init_from="generic",
            wall_seconds={"pixel": 5.0 * f, "gan": 5.0},
            training={"settings": {"batch_size": 16}, "init": {"model": "generic", "fold": 1}},
        )
        for f in (1, 2, 3)
    }
    for f in (1, 2, 3):
        (tmp_path / f"b{f}.tsv").write_text(BENCHMARK.format(s=10 + f, rss=100 * f))
    table = costs.training_costs(
        {"generic": {1: generic}, "mri_ft": folds}, {"mri_ft": {f: tmp_path / f"b{f}.tsv" for f in (1, 2, 3)}}
    )
    ft = table[table["model"] == "mri_ft"]
    assert ft.loc[ft["stage"] == "total", "fold"].tolist() == ["1", "2", "3", "all"]
    every = ft[(ft["fold"] == "all") & (ft["stage"] == "total")].iloc[0]
    assert every["seconds"] == pytest.approx(10 + 15 + 20) and every["iterations"] == 3 * 120
    assert every["cumulative_seconds"] == pytest.approx(45 + 80)  # generic trained once
    assert every["job_seconds"] == pytest.approx(11 + 12 + 13) and every["max_rss_mb"] == pytest.approx(300)
    assert every["device_hours"] == pytest.approx(45 * 2 / 3600)
    one = ft[(ft["fold"] == "2") & (ft["stage"] == "total")].iloc[0]
    assert one["cumulative_seconds"] == pytest.approx(15 + 80)
    assert (table[table["model"] == "generic"]["fold"] == "1").all()  # one run: no `all` rows


BENCHMARK = (
    "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    "{s}\t0:00:{s}\t{rss}\t1\t1\t1\t0\t0\t50\t{s}\n"
)


def test_cost_tables_from_benchmark_files(tmp_path):
    card = _card(tmp_path / "mri.yaml", "mri", device="cuda:0", device_name="Test GPU", gpus=2, threads=8)
    (tmp_path / "train.tsv").write_text(BENCHMARK.format(s=95.5, rss=1234.5))
    train = costs.training_costs({"mri": card}, {"mri": tmp_path / "train.tsv"})
    assert train["stage"].tolist() == ["total", "pixel", "gan"]
    total = train.iloc[0]
    assert total["seconds"] == pytest.approx(80.0) and total["job_seconds"] == pytest.approx(95.5)
    assert total["max_rss_mb"] == pytest.approx(1234.5)
    assert total["device_hours_unit"] == "GPU-hours" and total["device_hours"] == pytest.approx(80 * 2 / 3600)
    pixel = train.iloc[1]
    assert pixel["iterations_per_s"] == pytest.approx(2.0) and pixel["patches_per_s"] == pytest.approx(32.0)
    # inference: two 100x200 HR test images = 0.04 megapixels in 2 s -> 50 s per megapixel
    test = tmp_path / "test"
    for name in ("a", "b"):
        write_png16(test / "HR" / f"{name}.png", np.zeros((100, 200)))
        write_png16(test / "LR" / f"{name}.png", np.zeros((25, 50)))
    (tmp_path / "infer.tsv").write_text(BENCHMARK.format(s=2.0, rss="NA"))
    infer = costs.inference_costs({"mri": {"mri": tmp_path / "infer.tsv"}}, {"mri": test})
    row = infer.iloc[0]
    assert (row["images"], row["megapixels"]) == (2, pytest.approx(0.04))
    assert row["s_per_megapixel"] == pytest.approx(50.0) and math.isnan(row["max_rss_mb"])
    (tmp_path / "bad.tsv").write_text("x\ty\n1\t2\n")
    with pytest.raises(ValueError, match="not a Snakemake benchmark"):
        costs.read_benchmark(tmp_path / "bad.tsv")


def test_field_stats_detect_a_flux_error_and_use_the_metric_direction(tmp_path):
    ids = [f"img{i}" for i in range(8)]
    rng = np.random.default_rng(1)
    paths = {}
    for model, flux in (("bicubic", 0.01), ("generic", 0.01), ("astro", 0.10)):
        frame = pd.DataFrame(
            {
                "image_id": ids,
                "rmse_phys": 1.0 + 0.01 * rng.random(8),
                "psnr_phys": 30.0,
                "total_flux_rel_err": -flux + 0.001 * rng.random(8),
                "aperture_flux_rel_err": flux + 0.001 * rng.random(8),
                "aperture_flux_bias": -flux,
                "n_sources": 5,
            }
        )
        paths[model] = tmp_path / f"{model}.tsv"
        frame.to_csv(paths[model], sep="\t", index=False)
    long = field.read_field_scores({"astro": paths}, {"astro": "astronomy"})
    assert (long["total_flux_abs_err"] >= 0).all()
    table = field.field_stats(
        long,
        {"astro": "astronomy"},
        None,
        models=["bicubic", "generic", "astro"],
        baseline="bicubic",
        generic="generic",
    )
    row = table[
        (table["model"] == "astro") & (table["reference"] == "generic") & (table["metric"] == "total_flux_abs_err")
    ].iloc[0]
    assert row["mean_diff"] == pytest.approx(0.09, abs=0.002) and row["verdict"] == "worse"
    assert set(table["field"]) == {"astronomy"}


def test_budget_points_pool_the_folds_each_scored_by_its_own_instance(tmp_path):
    """Two test folds of 4 subjects: mri's snapshots come from the fold's own instance (mri fold 2 is much better
    than fold 1's), generic's one instance scores both; points and differences pool all 8 subjects, and the cost
    of a point is the mean of the instances' (one model's cost)."""
    ids = {1: [f"s{i}_t0" for i in range(4)], 2: [f"s{i}_t0" for i in range(4, 8)]}
    subjects = pd.DataFrame(
        [
            {
                "dataset": "mri",
                "fold": f,
                "image_id": i,
                "subject_id": i.split("_")[0],
                "split": "test",
                "in_train": False,
            }
            for f, fold_ids in ids.items()
            for i in fold_ids
        ]
    )
    shift = {("generic", 1): 0.0, ("generic", 2): 0.0, ("mri", 1): -0.002, ("mri", 2): -0.006}
    scores, tables = {"generic": {50: {}}, "mri": {50: {}}}, {}
    for model in ("generic", "mri"):
        for fold, fold_ids in ids.items():
            path = tmp_path / f"{model}_{fold}.tsv"
            pd.DataFrame({"image_id": fold_ids, "rmse": 0.05 + shift[(model, fold)], "psnr": 20.0, "ssim": 0.9}).to_csv(
                path, sep="\t", index=False
            )
            scores[model][50][fold] = path
    cards = {
        "generic": {1: _card(tmp_path / "g.yaml", "generic")},
        "mri": {f: _card(tmp_path / f"m{f}.yaml", "mri") for f in (1, 2)},
    }
    for model, instances in (("generic", (1,)), ("mri", (1, 2))):
        tables[model] = {}
        for f in instances:
            tables[model][f] = tmp_path / f"{model}{f}_budgets.tsv"
            write_budget_table(
                [{"budget": 50, "iteration": 50, "stage": "pixel", "seconds": 10.0 * f}], tables[model][f]
            )
    points, diffs = budget.budget_points(
        {"mri": scores},
        tables,
        cards,
        pd.DataFrame(columns=["model", "dataset", "image_id", "rmse", "psnr", "ssim"]),
        subjects,
    )
    row = points[(points["model"] == "mri") & (points["metric"] == "rmse")].iloc[0]
    assert row["n_subjects"] == 8 and row["mean"] == pytest.approx(0.05 - 0.004)
    assert row["seconds"] == pytest.approx(15.0)  # mean of the two instances' 10 s and 20 s
    d = diffs[(diffs["metric"] == "rmse")].iloc[0]
    assert d["n_subjects"] == 8 and d["mean_diff"] == pytest.approx(-0.004)
    assert d["iteration"] == 50 and d["cumulative_seconds"] == pytest.approx(15.0)
