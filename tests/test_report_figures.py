"""The report's forest plot, per-subject paired plot and budget figure: on small hand-made frames."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from PIL import Image

from scisr.report import answer_figures, figures

PNG = b"\x89PNG"
NAN = math.nan
PALETTE = figures.model_palette(["bicubic", "generic", "mri_ft", "mri_scratch", "ct_ft"])


def _png_size(path) -> tuple[int, int]:
    """Check `path` is a readable PNG and return its (width, height) in pixels."""
    assert path.read_bytes()[:4] == PNG
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def _forest_rows(n: int, *, ci: bool = True) -> pd.DataFrame:
    """`n` comparisons over two datasets (mri first, then ct), alternating verdicts."""
    verdicts = ["better", "worse", "no significant difference", "too few subjects to tell"]
    rows = []
    for i in range(n):
        mean = 0.001 * (i - n / 2)
        rows.append(
            {
                "dataset": "mri" if i % 2 == 0 else "ct",
                "model": ["mri_ft", "mri_scratch", "ct_ft"][i % 3],
                "reference": "generic",
                "mean_diff": mean,
                "ci_low": mean - 0.002 if ci else NAN,
                "ci_high": mean + 0.002 if ci else NAN,
                "verdict": verdicts[i % 4],
                "n_subjects": 10,
                "n_improved": i,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def _no_open_figures():
    """Every figure function closes what it opens."""
    before = len(plt.get_fignums())
    yield
    assert len(plt.get_fignums()) == before


@pytest.mark.parametrize("metric", ["rmse", "psnr", "ssim"])
def test_forest_figure_writes_a_png(tmp_path, metric):
    path = tmp_path / "forest.png"
    answer_figures.forest_figure(_forest_rows(4), path, metric=metric, palette=PALETTE, datasets=["mri", "ct"])
    width, height = _png_size(path)
    assert width > 500 and height > 200


def test_forest_figure_grows_with_the_number_of_rows(tmp_path):
    one, six = tmp_path / "one.png", tmp_path / "six.png"
    rows = _forest_rows(6).assign(dataset="mri")  # one group, so only the comparison count differs
    answer_figures.forest_figure(rows.iloc[:1], one, metric="rmse", palette=PALETTE, datasets=["mri"])
    answer_figures.forest_figure(rows, six, metric="rmse", palette=PALETTE, datasets=["mri"])
    (_, h1), (_, h6) = _png_size(one), _png_size(six)
    assert h6 >= 1.5 * h1


def test_forest_figure_draws_nan_cis_missing_counts_and_unlisted_datasets(tmp_path):
    rows = _forest_rows(3, ci=False)
    rows.loc[0, "ci_low"] = -0.01  # half a CI is no CI
    rows.loc[1, "mean_diff"] = NAN
    rows.loc[2, ["n_subjects", "n_improved"]] = NAN
    rows = pd.concat([rows, _forest_rows(1).assign(dataset="photos")], ignore_index=True)
    path = tmp_path / "forest.png"
    answer_figures.forest_figure(rows, path, metric="rmse", palette={}, datasets=["ct"])
    _png_size(path)


def test_forest_figure_on_no_rows_says_so(tmp_path):
    path = tmp_path / "forest.png"
    answer_figures.forest_figure(_forest_rows(2).iloc[:0], path, metric="psnr", palette=PALETTE, datasets=["mri"])
    width, height = _png_size(path)
    assert width > height


def test_forest_figure_rejects_an_unknown_metric(tmp_path):
    with pytest.raises(KeyError):
        answer_figures.forest_figure(
            _forest_rows(2), tmp_path / "forest.png", metric="mae", palette=PALETTE, datasets=["mri"]
        )


def _per_subject(datasets: dict[str, tuple[list[str], int]]) -> pd.DataFrame:
    """dataset -> (models, subjects): every subject scored by every model, the reference a bit worse."""
    rows = []
    for dataset, (models, n) in datasets.items():
        for s in range(n):
            for k, model in enumerate(models):
                rows.append(
                    {
                        "dataset": dataset,
                        "subject_id": f"{dataset}_s{s}",
                        "model": model,
                        "value": 0.05 + 0.002 * s - 0.001 * k,
                    }
                )
    return pd.DataFrame(rows)


def test_paired_subjects_figure_writes_a_png_per_dataset_panel(tmp_path):
    two, five = tmp_path / "two.png", tmp_path / "five.png"
    data = _per_subject(
        {
            "mri": (["mri_ft", "generic", "mri_scratch"], 6),
            "ct": (["generic", "ct_ft"], 3),
            "a": (["generic"], 2),
            "b": (["generic", "bicubic"], 4),
            "c": (["generic", "mri_ft"], 5),
        }
    )
    answer_figures.paired_subjects_figure(
        data[data["dataset"].isin(["mri", "ct"])],
        two,
        metric="rmse",
        reference="generic",
        palette=PALETTE,
        datasets=["mri", "ct", "unused"],
    )
    answer_figures.paired_subjects_figure(
        data, five, metric="rmse", reference="generic", palette=PALETTE, datasets=["mri", "ct", "a", "b", "c"]
    )
    (w2, h2), (w5, h5) = _png_size(two), _png_size(five)
    assert w5 > 1.5 * w2  # four panels in the first row against two
    assert h5 > 1.5 * h2  # the fifth panel wraps to a second row


def test_paired_subjects_figure_handles_missing_values_and_a_missing_reference(tmp_path):
    data = _per_subject({"mri": (["mri_ft", "mri_scratch"], 4)})
    data.loc[0, "value"] = NAN
    data = data.drop(index=3)  # one subject lacks a model
    path = tmp_path / "paired.png"
    answer_figures.paired_subjects_figure(
        data, path, metric="psnr", reference="generic", palette=PALETTE, datasets=["mri"]
    )
    _png_size(path)


def test_paired_subjects_figure_on_no_rows_says_so(tmp_path):
    path = tmp_path / "paired.png"
    empty = pd.DataFrame(columns=["dataset", "subject_id", "model", "value"])
    answer_figures.paired_subjects_figure(
        empty, path, metric="ssim", reference="generic", palette=PALETTE, datasets=["mri"]
    )
    _png_size(path)


def _budget_diffs() -> pd.DataFrame:
    """Two models x three budgets on mri, rmse (one NaN CI each) and psnr, plus a ct row."""
    rows = []
    for model, cost in (("mri_ft", 1.0), ("mri_scratch", 2.5)):
        for budget in (300, 1000, 3000):
            nan_ci = budget == (1000 if model == "mri_ft" else 300)
            mean = 0.002 - 0.001 * math.log10(budget) * cost / 2
            for metric, sign in (("rmse", 1.0), ("psnr", -300.0)):
                rows.append(
                    {
                        "dataset": "mri",
                        "model": model,
                        "reference": "generic",
                        "budget": budget,
                        "iteration": budget,
                        "cumulative_seconds": 0.2 * budget * cost,
                        "device_hours": 0.2 * budget * cost * 4 / 3600,
                        "device_hours_unit": "CPU-hours",
                        "metric": metric,
                        "n_subjects": 8,
                        "mean_diff": sign * mean,
                        "ci_low": NAN if nan_ci else sign * mean - abs(sign) * 0.001,
                        "ci_high": NAN if nan_ci else sign * mean + abs(sign) * 0.001,
                    }
                )
    rows.append(rows[0] | {"dataset": "ct", "model": "ct_ft"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("metric", ["rmse", "psnr"])
def test_budget_figure_two_models_three_budgets_with_nan_cis(tmp_path, metric, monkeypatch):
    saved = []
    monkeypatch.setattr(answer_figures, "save_figure", lambda fig, path: saved.append(fig) or fig.savefig(path))
    path = tmp_path / "budget.png"
    answer_figures.budget_figure(
        _budget_diffs(),
        path,
        dataset="mri",
        models=["generic", "mri_ft", "mri_scratch"],
        palette=PALETTE,
        metric=metric,
        statement="mri: crossover at 1000 iterations. " * 8,
    )  # long enough to wrap
    assert path.read_bytes()[:4] == PNG
    (fig,) = saved
    try:
        left, right = fig.axes[:2]
        assert left.get_xscale() == right.get_xscale() == "log"
        assert left.get_shared_y_axes().joined(left, right)
        lines = [line for line in left.get_lines() if line.get_label() in ("mri_ft", "mri_scratch")]
        assert [line.get_label() for line in lines] == ["mri_ft", "mri_scratch"]
        # the dodge: the same budget sits at slightly different x for the two models, never at the budget itself
        x_ft, x_scratch = (line.get_xdata() for line in lines)
        assert x_ft[0] < 300 < x_scratch[0]
        assert x_scratch[0] / x_ft[0] == pytest.approx(1.04)
        assert not any(text.get_text().strip() in {"300", "1000", "3000"} for text in left.texts)  # no point labels
        assert "\n" in fig._suptitle.get_text() and fig._suptitle.get_fontsize() == 9
        assert "CPU-hours" in right.get_xlabel()
    finally:
        plt.close(fig)


def test_budget_figure_on_an_empty_selection_says_so(tmp_path):
    for diffs, dataset in ((_budget_diffs(), "photos"), (pd.DataFrame(), "mri")):
        path = tmp_path / f"budget_{dataset}.png"
        answer_figures.budget_figure(
            diffs, path, dataset=dataset, models=["generic", "mri_ft"], palette=PALETTE, statement=""
        )
        _png_size(path)


def test_budget_figure_skips_the_reference_and_unknown_models(tmp_path):
    path = tmp_path / "budget.png"
    diffs = _budget_diffs()
    diffs = diffs[diffs["model"] == "mri_scratch"]
    answer_figures.budget_figure(
        diffs, path, dataset="mri", models=["generic", "mri_ft", "mri_scratch"], palette={}, statement="one model only"
    )
    _png_size(path)
