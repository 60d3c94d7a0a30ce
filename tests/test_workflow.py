"""The Snakemake workflow's one tiny real run, end to end (its lint, schema and dry runs: test_workflow_config.py)."""

from __future__ import annotations

import base64
import math
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import tifffile
from conftest import TinyStudy

from scisr.budgets import read_budget_table
from scisr.card import ModelCard
from scisr.deid import reidentify
from scisr.index import read_index

DATASETS = ["astro", "generic", "mri"]
# config.yaml's models, `pretrained` imported from a small ncnn pair and mri_ftp (it fine-tuned on mri) added
TRAINED = ["generic", "mri", "astro", "mri_ft", "astro_ft", "mri_ftp"]
MODELS = ["bicubic", "pretrained", *TRAINED]


_DATA_URI = re.compile(rb"data:[\w/+.-]+;base64,([A-Za-z0-9+/=]+)")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_metadata(data: bytes) -> bytes:
    """Every PNG chunk but the compressed pixels (IDAT): where a name could be written (tEXt, iTXt, ...)."""
    out, at = [], len(_PNG_SIGNATURE)
    while at + 8 <= len(data):
        length, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        if kind != b"IDAT":
            out.append(kind + data[at + 8 : at + 8 + length])
        at += 12 + length
    return b"".join(out)


def content_bytes(path: Path) -> bytes:
    """The bytes of a file a name could hide in: text as it is; for binary outputs their metadata only.

    Pixel data and weights are not text: 50 MB of them hold any given 4 bytes ("4MR1") by chance about
    once in a hundred runs, and CI once matched "4MR1" inside the base64 text of a report figure. So
    figures embedded in the report are decoded, PNGs contribute every chunk but IDAT, TIFFs their tag
    values, torch files every archive member but the tensor storages — a name written into any
    metadata is still found.
    """
    data = path.read_bytes()
    if path.suffix == ".html":
        return _DATA_URI.sub(lambda m: b"data:" + _png_metadata(base64.b64decode(m.group(1))), data)
    if data.startswith(_PNG_SIGNATURE):
        return _png_metadata(data)
    if path.suffix in (".tif", ".tiff"):
        with tifffile.TiffFile(path) as tif:
            return "\n".join(f"{tag.name}={tag.value}" for page in tif.pages for tag in page.tags).encode()
    if path.suffix == ".pt":
        with zipfile.ZipFile(path) as archive:
            return b"".join(name.encode() + archive.read(name) for name in archive.namelist() if "/data/" not in name)
    return data


@pytest.mark.workflow
def test_tiny_study_runs_end_to_end_and_is_incremental(tiny_study: TinyStudy) -> None:
    work = tiny_study.folder  # conftest.tiny_study: run once per test run, shared with test_rerun.py

    for name in DATASETS:
        assert (work / f"resources/raw/{name}/MANIFEST.tsv").is_file()
        index = pd.read_csv(work / f"results/extract/{name}/index.tsv", sep="\t")
        assert (index["status"] == "ok").sum() > 0
        assert (work / f"results/normalize/{name}/params.tsv").is_file()
        split = pd.read_csv(work / f"results/split/{name}/split.tsv", sep="\t")
        assert {"train", "val", "test"} <= set(split["split"]) <= {"train", "val", "test", "excluded"}
        whole_groups = split[~split["group_rule"].isin(["tile", "slab"])]
        assert whole_groups.groupby("group")["split"].nunique().le(1).all(), "a subject group crossed splits"
    # The broken MRI files are recorded, not lost and not fatal; the key map names them.
    mri = reidentify(read_index(work / "results/extract/mri/index.tsv"), work / "resources/deid/mri.tsv")
    skipped = mri[mri["status"] == "skipped"]
    assert skipped["reason"].str.len().gt(0).all()
    assert skipped["source_path"].str.contains("truncated|too_short").any()
    # ... and no file under results/ or logs/ names a source file or a patient
    names = [b"MR_small", b"emri_small", b"4MR1", b"021234567", b"astronaut", b"hubble", b"m13.fits"]
    leaks = [
        f"{p.relative_to(work)}: {n.decode()}"
        for folder in ("results", "logs")
        for p in (work / folder).rglob("*")
        if p.is_file()
        for n in names
        if n in content_bytes(p) or n.decode() in p.name
    ]
    assert not leaks, leaks[:10]

    for model in TRAINED:
        folder = work / "results/models" / model / "fold1"  # a single holdout: one instance, fold 1
        for name in ("generator.pt", "history.tsv", "model.yaml"):
            assert (folder / name).is_file(), f"{model}: {name} missing"
    imported = ModelCard.read(work / "results/models/pretrained/model.yaml")
    assert imported.source == "imported" and imported.origin["licence"] == "random test weights"
    assert not (work / "results/models/pretrained/history.tsv").exists()
    for model in MODELS:
        for name in DATASETS:
            scores = pd.read_csv(work / f"results/score/{model}/{name}/fold1.tsv", sep="\t")
            assert len(scores) > 0
            assert scores[["rmse", "ssim"]].map(math.isfinite).all().all()
    summary = pd.read_csv(work / "results/report/summary.tsv", sep="\t")
    assert set(summary["model"]) == set(MODELS)
    assert set(summary["dataset"]) == set(DATASETS)
    html = (work / "results/report/index.html").read_text()
    assert "data:image/png;base64," in html
    # the cost table: each trained model's iterations and wall seconds per stage, from its model card
    # (fine-tuned models: tiny.yaml's `finetune` schedule, and the model they started from on the card)
    init = {"mri_ft": "generic", "astro_ft": "generic", "mri_ftp": "pretrained"}
    for model in TRAINED:
        card = ModelCard.read(work / "results/models" / model / "fold1" / "model.yaml")
        assert card.training_data["dataset"] == model.split("_")[0] and card.normalization["high_percentile"] > 0
        assert (card.training_data["fold"], card.training_data["folds"]) == (1, 1)
        assert min(card.wall_seconds.values()) > 0 and card.init_from == init.get(model)
        total = 14 if model in init else 26
        assert re.search(rf"<td>{model}</td><td>[0-9\u2009]+</td><td>total</td><td>{total}</td>", html)
    ftp = ModelCard.read(work / "results/models/mri_ftp/fold1/model.yaml")
    assert ftp.arch == "rrdbnet" and ftp.args["in_channels"] == 3 and ftp.channels == 1  # through the adapter
    assert "pretrained (imported from small-rrdbnet.param + small-rrdbnet.bin, not trained here)" in html

    # the budget crossover: snapshots at 10 and 20 iterations, scored; points, statements and figures
    for model in TRAINED:
        budgets = read_budget_table(work / "results/models" / model / "fold1" / "budgets.tsv")
        final = 14 if model in init else 20  # a budget past a model's schedule is its final model
        assert budgets["iteration"].tolist() == [10, final] and budgets["seconds"].is_monotonic_increasing
        assert all((work / "results/models" / model / "fold1" / "budget" / f"{b}.pt").is_file() for b in (10, 20))
    points = pd.read_csv(work / "results/report/budget.tsv", sep="\t")
    assert set(points["budget"]) == {10, 20, 26} and set(points["dataset"]) == {"mri", "astro"}
    assert {"generic", "mri", "mri_ft", "mri_ftp"} == set(points.loc[points["dataset"] == "mri", "model"])
    for dataset in ("mri", "astro"):
        assert (work / f"results/report/budget_{dataset}.png").stat().st_size > 10_000
        assert re.search(
            rf"{dataset}: (crossover at \d+ iterations|no crossover in the range|too few test subjects)", html
        )
    # field metrics: a table per (model, field dataset), their statistics and their section
    mri_field = pd.read_csv(work / "results/score/mri/mri/fold1.field.tsv", sep="\t")
    assert {"rmse_fg", "psnr_fg", "ssim_fg"} <= set(mri_field.columns) and (mri_field["fg_fraction"] > 0).all()
    astro_field = pd.read_csv(work / "results/score/generic/astro/fold1.field.tsv", sep="\t")
    assert astro_field[["rmse_phys", "total_flux_rel_err"]].map(math.isfinite).all().all()
    field_stats = pd.read_csv(work / "results/report/field_stats.tsv", sep="\t")
    assert set(field_stats["field"]) == {"mri", "astronomy"}
    assert "<h2>Field metrics</h2>" in html and "<h2>Training budget</h2>" in html
    # the declared plan opens the page, then the answer, then the details
    assert html.index("<h2>Statistical plan</h2>") < html.index("<h2>Answer</h2>") < html.index("Scores per dataset")
    assert "What this study cannot show" in html  # 1 mri test subject: no primary verdict can be significant
    # costs from model cards and benchmark files
    cost = pd.read_csv(work / "results/report/costs.tsv", sep="\t")
    totals = cost[cost["stage"] == "total"].set_index("model")
    trained = totals.loc[TRAINED]
    assert (trained["job_seconds"] > 0).all() and (trained["max_rss_mb"] > 0).all()
    assert "pretrained" not in totals.index or pd.isna(totals.at["pretrained", "job_seconds"])  # not trained here
    infer_cost = pd.read_csv(work / "results/report/infer_costs.tsv", sep="\t")
    assert len(infer_cost) == len(MODELS) * len(DATASETS) and (infer_cost["s_per_megapixel"] > 0).all()

    again = tiny_study.run("--dry-run")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout

    report = tiny_study.run("--report", str(work / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    assert (work / "report.html").stat().st_size > 10_000
