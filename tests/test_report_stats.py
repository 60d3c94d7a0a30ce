"""Subject-level statistics of the report: verdicts, cluster bootstrap, Wilcoxon, Holm, split tables, palette."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pandas as pd
import pytest
from conftest import dataset_settings
from report_helpers import report_outputs, report_settings

from scisr.index import INDEX_COLUMNS, write_index
from scisr.io.files import write_tiff
from scisr.prepare.split import split_dataset
from scisr.report import build_report, figures, stats


def _long(
    diffs_by_subject: dict[str, list[float]],
    *,
    dataset: str = "mri",
    model: str = "mri",
    reference: str = "bicubic",
    base: float = 0.05,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores of `model` = `reference` + the given RMSE differences, and the image -> subject mapping."""
    rows, mapping = [], []
    for subject, diffs in diffs_by_subject.items():
        for k, d in enumerate(diffs):
            image_id = f"{subject}_img{k}"
            ref = base + 0.001 * k
            for name, rmse in ((reference, ref), (model, ref + d)):
                rows.append(
                    {
                        "model": name,
                        "dataset": dataset,
                        "image_id": image_id,
                        "rmse": rmse,
                        "psnr": -20 * math.log10(rmse),
                        "ssim": 1 - rmse,
                    }
                )
            mapping.append(
                {"dataset": dataset, "image_id": image_id, "subject_id": subject, "split": "test", "in_train": False}
            )
    return pd.DataFrame(rows), pd.DataFrame(mapping)


def _row(table: pd.DataFrame, metric: str = "rmse") -> pd.Series:
    return table[table["metric"] == metric].iloc[0]


def test_known_shift_is_detected_in_both_directions() -> None:
    rng = np.random.default_rng(1)
    shift = {f"s{i}": list(-0.01 + 0.001 * rng.standard_normal(3)) for i in range(10)}
    long, subjects = _long(shift)
    table = stats.paired_stats(long, subjects, n_boot=2000)
    rmse, psnr = _row(table, "rmse"), _row(table, "psnr")
    assert rmse["n_subjects"] == 10 and rmse["n_images"] == 30
    assert rmse["verdict"] == "better" and psnr["verdict"] == "better"  # lower RMSE, higher PSNR: both better
    assert rmse["ci_low"] < -0.01 < rmse["ci_high"] < 0
    assert rmse["p_value"] == pytest.approx(2 / 2**10)  # exact: every subject moved the same way
    worse = {s: [-d for d in v] for s, v in shift.items()}
    assert _row(stats.paired_stats(*_long(worse), n_boot=500))["verdict"] == "worse"


def test_identical_inputs_give_no_significant_difference() -> None:
    long, subjects = _long({f"s{i}": [0.0, 0.0] for i in range(8)})
    row = _row(stats.paired_stats(long, subjects, n_boot=500))
    assert row["verdict"] == "no significant difference"
    assert row["mean_diff"] == 0 and row["ci_low"] == 0 and row["ci_high"] == 0 and row["p_value"] == 1


def test_two_subjects_are_too_few_however_large_the_shift() -> None:
    long, subjects = _long({"s0": [-0.02] * 20, "s1": [-0.03] * 20})
    row = _row(stats.paired_stats(long, subjects, n_boot=500))
    assert row["n_subjects"] == 2 and row["n_images"] == 40
    assert row["verdict"] == "too few subjects to tell"
    assert row["p_min_possible"] == 0.5 and row["p_min_reachable"] >= stats.ALPHA


def test_bootstrap_resamples_subjects_not_images() -> None:
    # 8 subjects, 12 images each; images of one subject share exactly the same difference
    rng = np.random.default_rng(2)
    long, subjects = _long({f"s{i}": [float(d)] * 12 for i, d in enumerate(-0.005 + 0.004 * rng.standard_normal(8))})
    clustered = _row(stats.paired_stats(long, subjects, n_boot=4000))
    as_images = subjects.assign(subject_id=subjects["image_id"])  # pretend every image is independent
    naive = _row(stats.paired_stats(long, as_images, n_boot=4000))
    assert clustered["n_subjects"] == 8 and naive["n_subjects"] == 96
    assert clustered["mean_diff"] == pytest.approx(naive["mean_diff"])  # equal cluster sizes: same estimate
    width, naive_width = clustered["ci_high"] - clustered["ci_low"], naive["ci_high"] - naive["ci_low"]
    assert width > 2.5 * naive_width  # ~sqrt(12) wider: 12 copies of one subject are not 12 observations
    assert clustered["p_value"] > naive["p_value"]


def test_bootstrap_is_seeded() -> None:
    long, subjects = _long({f"s{i}": [0.001 * i - 0.003, 0.002] for i in range(7)})
    a = stats.paired_stats(long, subjects, n_boot=1000, seed=3)
    b = stats.paired_stats(long, subjects, n_boot=1000, seed=3)
    c = stats.paired_stats(long, subjects, n_boot=1000, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_low"], c["ci_low"])
    assert "1000 resamples, seed 3" in a["ci"].iloc[0]


def test_bootstrap_ci_ignores_subject_order_and_is_the_percentile_interval_of_the_draws() -> None:
    values = np.random.default_rng(4).normal(-0.002, 0.003, size=9)
    ci = stats.bootstrap_ci(values, n_boot=2000, rng=np.random.default_rng(5))
    assert ci == stats.bootstrap_ci(values[::-1], n_boot=2000, rng=np.random.default_rng(5))  # pseudonym order
    # the same resamples drawn by hand from the same generator: 2.5 and 97.5 percentiles of their means
    means = np.sort(values)[np.random.default_rng(5).integers(0, 9, size=(2000, 9))].mean(axis=1)
    assert ci == pytest.approx(tuple(np.percentile(means, [2.5, 97.5])), rel=0, abs=1e-15)
    assert np.isnan(stats.bootstrap_ci(values[:1], rng=np.random.default_rng(5))).all()


def test_wilcoxon_exact_minimum_and_fallback() -> None:
    assert stats.wilcoxon_p(np.arange(1, 6))[0] == pytest.approx(0.0625)  # n = 5 can never reach 0.05
    p, test = stats.wilcoxon_p(np.arange(1, 7))
    assert p == pytest.approx(0.03125) and test.endswith("exact")
    assert "approximation" in stats.wilcoxon_p(np.array([1.0, 1.0, 2, 3, 4, 5, 6]))[1]  # ties
    assert stats.wilcoxon_p(np.zeros(9)) == (1.0, "all differences zero")


def test_holm_step_down() -> None:
    np.testing.assert_allclose(stats.holm([0.01, 0.04, 0.03, np.nan]), [0.03, 0.06, 0.06, np.nan])
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1, never below an earlier step


def test_holm_runs_within_the_declared_families() -> None:
    rng = np.random.default_rng(5)
    long, subjects = _long({f"s{i}": list(-0.01 + 0.001 * rng.standard_normal(2)) for i in range(7)})
    extra = long[long["model"] == "mri"].assign(model="generic")  # a second model: two more comparisons
    table = stats.paired_stats(pd.concat([long, extra]), subjects, n_boot=500)
    rmse = table[table["metric"] == "rmse"]
    assert set(rmse["comparison"]) == {"vs bicubic", "domain vs generic"}
    primary = table[table["family"] == "primary"]
    # the primary family: the domain model against generic on the primary metric (RMSE) only
    assert list(zip(primary["model"], primary["reference"], primary["metric"])) == [("mri", "generic", "rmse")]
    assert (primary["family_size"] == 1).all() and (primary["p_holm"] == primary["p_value"]).all()
    versus = table[(table["reference"] == "bicubic") & (table["metric"] == "rmse")]
    assert len(versus) == 2 and (versus["family"] == "secondary: mri, rmse, vs bicubic").all()
    assert (versus["family_size"] == 2).all()
    tested = versus[versus["p_value"] < 1]
    assert (tested["p_holm"] >= tested["p_value"] * 2 - 1e-12).all()
    assert versus["correction"].str.contains("Holm over the 2 comparison\\(s\\) of secondary: mri, rmse").all()
    other = table[(table["reference"] == "generic") & (table["metric"] == "psnr")]
    assert (other["family"] == "secondary: mri, psnr, vs generic").all()  # other metrics are secondary
    # 7 subjects: 2/2^7 x 2 = 0.031 is reachable in a family of two, not in a family of four
    assert stats.reachable_p(7, 2) < stats.ALPHA <= stats.reachable_p(7, 4)
    assert stats.subjects_needed(1) == 6 and stats.subjects_needed(6) == 8 and stats.subjects_needed(14) == 10


def test_primary_family_size_and_psnr_primary_metric() -> None:
    long, subjects = _long({f"s{i}": [-0.002] for i in range(10)})
    frames = [long]
    frames.extend(
        long[long["model"] == "mri"].assign(model=model) for model in ("generic", "mri_ft", "pretrained", "astro")
    )
    table = stats.paired_stats(pd.concat(frames), subjects, n_boot=200, primary_metric="psnr", imported=("pretrained",))
    primary = table[table["family"] == "primary"]
    assert set(primary["model"]) == {"mri", "mri_ft", "pretrained"} and set(primary["metric"]) == {"psnr"}
    assert (primary["family_size"] == 3).all()
    assert not (table[table["model"] == "astro"]["family"] == "primary").any()  # cross-domain: secondary
    # every model beat bicubic on all 10 subjects: better, even after Holm over the 5 models vs bicubic
    versus = table[(table["reference"] == "bicubic") & (table["metric"] == "psnr")]
    assert (versus["verdict"] == "better").all() and (versus["n_improved"] == 10).all()
    assert (versus["share_improved"] == 1).all() and (versus["median_diff"] > 0).all()


def test_comparisons_cover_domain_finetuned_pretrained_and_baseline() -> None:
    models = ["bicubic", "generic", "mri", "mri_ft", "astro", "pretrained"]
    found = stats.comparisons(models, ["mri", "generic"], baseline="bicubic", generic="generic")
    assert ("mri", "domain vs generic", "mri", "generic") in found
    assert ("mri", "fine-tuned vs generic", "mri_ft", "generic") in found
    assert ("mri", "imported vs generic", "pretrained", "generic") in found
    assert ("generic", "vs bicubic", "astro", "bicubic") in found
    assert not [c for c in found if c[0] == "generic" and c[3] == "generic"]
    assert not [c for c in found if c[2] == "astro" and c[3] == "generic"]


def test_unknown_image_in_split_table_is_a_clear_error() -> None:
    long, subjects = _long({f"s{i}": [0.001] for i in range(6)})
    with pytest.raises(ValueError, match="mri: scored image 's5_img0' is not in the split table"):
        stats.paired_stats(long, subjects[subjects["image_id"] != "s5_img0"])


def _split_study(root) -> dict:
    """A real split (split_dataset): 10 small subjects plus one big image cut into tiles."""
    rng = np.random.default_rng(0)
    norm = root / "norm"
    rows = []
    for s in range(10):
        for f in range(2):
            write_tiff(norm / f"sub{s}_f{f}.tif", 0.2 + 0.6 * rng.random((32, 32)))
            rows.append({"image_id": f"sub{s}_f{f}", "subject_id": f"sub{s}", "status": "ok"})
    write_tiff(norm / "big.tif", 0.2 + 0.6 * rng.random((128, 128)))
    rows.append({"image_id": "big", "subject_id": "bigsubject", "status": "ok"})
    defaults = dict.fromkeys(INDEX_COLUMNS, "") | {"frame": 0, "rows": 0, "cols": 0}
    write_index([defaults | row for row in rows], root / "index.tsv")
    table = split_dataset(
        root / "index.tsv",
        norm,
        {p: root / "split" / p for p in ("train", "val", "test")},
        root / "split.tsv",
        scale=4,
        **(dataset_settings("split") | {"fractions": {"train": 0.5, "val": 0.1, "test": 0.4}, "tile_size": 32}),
        seed=1,
    )
    return {"table": table, "path": root / "split.tsv"}


def test_subjects_from_a_real_split_table_and_report(tmp_path) -> None:
    split = _split_study(tmp_path)
    table = split["table"]
    subjects = stats.subjects_from_split({"mri": split["path"]})
    tiles = subjects[subjects["subject_id"] == "bigsubject"]
    assert len(tiles) == 16 and tiles["in_train"].all()  # tiles of one image land in train and test alike
    small = subjects[subjects["subject_id"] != "bigsubject"]
    assert (small["in_train"] == (small["split"] == "train")).all()  # whole subjects never cross splits

    test = table[table["split"] == "test"]
    rng = np.random.default_rng(3)
    scores = {}
    for model, offset in (("bicubic", 0.0), ("generic", -0.002), ("mri", -0.004)):
        rmse = 0.05 + offset + 0.0005 * rng.standard_normal(len(test))
        frame = pd.DataFrame({"image_id": test["id"], "rmse": rmse, "psnr": -20 * np.log10(rmse), "ssim": 1 - rmse})
        path = tmp_path / "score" / model / "mri.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, sep="\t", index=False)
        scores[model] = {"mri": path}
    out = tmp_path / "report"
    build_report(
        {"scores": scores, "splits": {"mri": split["path"]}},
        report_outputs(out, []),
        report_settings(degradations={"mri": "kspace"}),
    )
    result = pd.read_csv(out / "stats.tsv", sep="\t")
    row = result[(result["model"] == "mri") & (result["reference"] == "generic") & (result["metric"] == "rmse")]
    row = row.iloc[0]
    assert row["n_images"] == len(test)
    assert row["n_subjects"] == test["subject_id"].nunique() < len(test)  # the big image's tiles are one subject
    assert "bigsubject" in set(test["subject_id"])  # seed 1 puts tiles of the big image in test and train
    assert row["shared_subjects"] == 1
    assert row["subjects"] == "subjects from split.tsv"
    n_subjects = test["subject_id"].nunique()
    assert n_subjects < stats.subjects_needed(1) < len(test)
    assert row["verdict"] == "too few subjects to tell"  # a few test subjects, though many test images
    page = (out / "index.html").read_text()
    assert "What this means" in page and "kspace" in page
    assert "also have images in mri&#x27;s training split" in page
    assert (
        f"too few subjects to tell the mri-trained model from the generic model on mri: {n_subjects} test subjects"
    ) in page


def test_palette_distinct_colour_blind_safe_and_stable() -> None:
    models = ["bicubic", "generic", "mri", "astro", "mri_ft", "astro_ft", "pretrained", "a", "b", "c", "d", "e"]
    palette = figures.model_palette(models)
    colours = list(palette.values())
    assert len(set(colours)) == len(models)
    for i, a in enumerate(colours):
        for b in colours[i + 1 :]:
            assert max(abs(x - y) for x, y in zip(a, b)) > 0.08
    # generic and the first domain model are far apart in hue (they were two oranges once)
    hue = [colorsys.rgb_to_hls(*palette[m])[0] for m in ("generic", "mri")]
    assert min(abs(hue[0] - hue[1]), 1 - abs(hue[0] - hue[1])) > 0.2
    assert palette == figures.model_palette(models)  # the same list gives the same colours in every figure
    assert palette["bicubic"] == pytest.approx((0.6, 0.6, 0.6))
    assert figures.model_palette(models[:6])["mri"] == palette["mri"]
