"""Rerun-on-change: after a finished tiny study, each kind of change reruns exactly what depends on it.

The tiny study (conftest.tiny_study) holds its own copy of the workflow (Snakefile, rules, scripts, library
sources, config), so the tests can edit library files without touching the checkout; each edit is undone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, TinyStudy

pytestmark = pytest.mark.workflow


@pytest.fixture
def study(tiny_study: TinyStudy) -> TinyStudy:
    """The session's finished tiny study (conftest.tiny_study, shared with test_workflow.py): 6 trained models
    (generic, mri, astro, mri_ft and astro_ft from generic, mri_ftp from the imported `pretrained`), bicubic and
    `pretrained`, on 3 datasets; field metrics on mri and astro."""
    return tiny_study


@contextlib.contextmanager
def edited(path: Path) -> Iterator[None]:
    """Change the content of `path` (Snakemake compares checksums, so a mere touch is no change), then restore it."""
    original, stat = path.read_bytes(), path.stat()
    path.write_bytes(original + b"\n# edited by a test\n")
    later = time.time() + 5
    os.utime(path, (later, later))
    try:
        yield
    finally:
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_second_run_schedules_nothing(study: TinyStudy) -> None:
    assert study.planned() == {}


def test_train_settings_of_one_model_rerun_only_that_model_and_downstream(study: TinyStudy) -> None:
    plan = study.planned({"models": {"mri": {"data": "mri", "train": {"pixel": {"iterations": 21}}}}})
    # one model retrained, then its predictions and scores on the 3 datasets (field metrics on the 2 field
    # datasets), its budget snapshots on its own dataset (one job), then the report
    assert plan == {"train": 1, "infer": 3, "score": 3, "score_field": 2, "score_budget": 1, "report": 1}


def test_a_normalization_setting_reruns_from_normalize_down(study: TinyStudy) -> None:
    plan = study.planned({"datasets": {"astro": {"normalize": {"high_percentile": 99.8}}}})
    # astro normalized (its 2 work units and their gather) and split again (plan, 2 units, gather); the astro and
    # astro_ft models retrained; every model on astro's
    # test set (bicubic, pretrained and 6 trained: 8) plus the 2 retrained models on the two other datasets (4)
    # field metrics of every model on astro (8) and of the 2 retrained models on mri (2); the astro crossover's
    # snapshots of generic, astro and astro_ft (3 jobs)
    assert plan == {
        "normalize_unit": 2,
        "normalize": 1,
        "split_plan": 1,
        "split_unit": 2,
        "split": 1,
        "train": 2,
        "infer": 12,
        "score": 12,
        "score_field": 10,
        "score_budget": 3,
        "report": 1,
    }


def test_editing_the_training_code_reruns_training_not_extraction(study: TinyStudy) -> None:
    with edited(study.folder / "src" / "scisr" / "train" / "trainer.py"):
        plan = study.planned()
    # 6 trained models on 3 datasets (field metrics on 2); bicubic and the imported model's predictions stay;
    # every model's budget snapshots: (generic, mri, mri_ft, mri_ftp) on mri and (generic, astro, astro_ft) on astro
    assert plan == {"train": 6, "infer": 18, "score": 18, "score_field": 12, "score_budget": 7, "report": 1}


def test_retraining_the_generic_model_retrains_the_models_fine_tuned_from_it(study: TinyStudy) -> None:
    plan = study.planned({"models": {"generic": {"data": "generic", "train": {"pixel": {"iterations": 21}}}}})
    # generic, mri_ft and astro_ft (init: generic) retrained, each on the 3 datasets (field metrics on 2);
    # budgets: generic on mri and astro, mri_ft on mri, astro_ft on astro
    assert plan == {"train": 3, "infer": 9, "score": 9, "score_field": 6, "score_budget": 4, "report": 1}


def test_editing_the_import_script_reimports_only_the_imported_model(study: TinyStudy) -> None:
    with edited(study.folder / "scripts" / "import_weights.py"):
        plan = study.planned()
    # the imported model and mri_ftp, fine-tuned from it, each on the 3 datasets (field metrics on 2); mri_ftp's
    # budget snapshots on mri
    assert plan == {
        "import_weights": 1,
        "train": 1,
        "infer": 6,
        "score": 6,
        "score_field": 4,
        "score_budget": 1,
        "report": 1,
    }


def test_editing_the_report_code_reruns_only_the_report(study: TinyStudy) -> None:
    with edited(study.folder / "src" / "scisr" / "report" / "html.py"):
        plan = study.planned()
    assert plan == {"report": 1}


def test_editing_a_reader_reruns_extraction_of_every_dataset(study: TinyStudy) -> None:
    with edited(study.folder / "src" / "scisr" / "io" / "dicom.py"):
        plan = study.planned()
    assert plan["extract_unit"] == 6 and plan["extract"] == 3 and "download" not in plan  # 2 work units each


def test_a_failed_work_unit_reruns_alone(study: TinyStudy) -> None:
    """A unit that failed left no outputs, and the gather waiting for it never ran: rebuilding the dataset's index
    runs that unit and the gather, not the dataset's other unit. (Missing intermediates alone rerun nothing when
    everything after them is up to date: Snakemake keeps finished results whose inputs did not change.)"""
    extract = study.folder / "results" / "extract" / "astro"
    kept = study.folder / "extract-astro-kept"
    shutil.copytree(extract, kept, symlinks=True)  # copy2: times kept, so putting it back leaves nothing to rerun
    try:
        shutil.rmtree(extract / "units" / "2")
        (extract / "index.tsv").unlink()
        shutil.rmtree(extract / "frames")
        assert study.planned(targets=("results/extract/astro/index.tsv",)) == {"extract_unit": 1, "extract": 1}
    finally:
        shutil.rmtree(extract)
        kept.rename(extract)
    assert not study.planned()


# --- Kill at any point, lose nothing -------------------------------------------------------------------------------
# Each phase's job is SIGKILLed at its first atomic write, after the temporary file is complete and before it is
# renamed (tests/killhook/sitecustomize.py), the worst moment for a file; the rerun must finish with outputs equal
# to the uninterrupted run's and leave no temporary file behind. One job per rule: the target and what it writes.
KILL_AT = {
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "tests" / "killhook"), os.environ.get("PYTHONPATH")])),
    "SCISR_TEST_KILL_AT_WRITE": "1",
}
KILLS = [
    ("download", "resources/raw/astro/MANIFEST.tsv", "resources/raw/astro"),
    ("extract_unit", "results/extract/astro/units/1/candidates.tsv", "results/extract/astro/units/1"),
    ("extract", "results/extract/astro/index.tsv", "results/extract/astro"),
    ("normalize_unit", "results/normalize/astro/units/1/params.tsv", "results/normalize/astro/units/1"),
    ("normalize", "results/normalize/astro/params.tsv", "results/normalize/astro"),
    ("split_plan", "results/split/astro/split.tsv", "results/split/astro"),
    ("split_unit", "results/split/astro/units/1/store", "results/split/astro/units/1"),
    ("split", "results/split/astro/store", "results/split/astro"),
    ("train", "results/models/astro/fold1/generator.pt", "results/models/astro/fold1"),
    ("infer", "results/infer/generic/astro/fold1", "results/infer/generic/astro/fold1"),
    ("score", "results/score/generic/astro/fold1.tsv", "results/score/generic/astro/fold1.tsv"),
    ("score_budget", "results/budget/score/astro/10/astro/fold1.tsv", "results/budget/score/astro"),
    ("report", "results/report/summary.tsv", "results/report"),
]
# Written anew on every run by design: wall-clock columns and fields, not results.
CLOCK_COLUMNS = {"seconds", "cumulative_seconds", "wall_seconds", "time", "elapsed_s", "device_hours"}


def _content(path: Path) -> object:
    """What must survive a kill unchanged: bytes, except tensors for .pt files and tables without clock columns."""
    if path.suffix == ".pt":
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v.float().numpy().tobytes() for k, v in sorted(state.items())}
    if path.suffix == ".tsv":
        import pandas as pd

        table = pd.read_csv(path, sep="\t")
        return table.drop(columns=[c for c in table.columns if c in CLOCK_COLUMNS]).to_csv()
    if path.name == "model.yaml":
        card = yaml.safe_load(path.read_text())
        return {k: v for k, v in card.items() if k not in CLOCK_COLUMNS}
    return path.read_bytes()


def _snapshot(root: Path) -> dict[str, object]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): _content(p) for p in files}


def _temporaries(folder: Path) -> list[str]:
    return [str(p) for top in ("results", "resources") for p in (folder / top).rglob("*") if ".tmp" in p.name]


@pytest.mark.parametrize(("rule", "target", "written"), KILLS, ids=[k[0] for k in KILLS])
def test_a_job_killed_mid_write_reruns_to_the_same_outputs(
    study: TinyStudy, rule: str, target: str, written: str
) -> None:
    # the case before may have renewed this target's inputs (e.g. the extract gather's frames, which every normalize
    # unit reads): bring the target up to date first, so the killed job is the forced one, not a job upstream of it
    assert study.run(target).returncode == 0
    if rule == "report":  # its cost tables and figures show the job times that the cases before this one renewed
        assert study.run(target, "--forcerun", target).returncode == 0
    before = _snapshot(study.folder / written)
    killed = study.run(target, "--forcerun", target, env=KILL_AT)
    assert killed.returncode != 0, f"{rule}: the job was not killed"
    assert f"rule {rule}:" in killed.stdout + killed.stderr
    rerun = study.run(target)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = _snapshot(study.folder / written)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert not changed, f"{rule}: differs after the kill and rerun: {changed}"
    assert not _temporaries(study.folder)


def test_a_second_run_on_the_same_folder_is_refused_while_the_first_runs(study: TinyStudy) -> None:
    target = "results/models/astro/fold1/generator.pt"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    first = subprocess.Popen(
        study.command(target, "--forcerun", target),
        cwd=study.folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        locks = study.folder / ".snakemake" / "locks"
        deadline = time.monotonic() + 60
        while not any(locks.glob("*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        second = study.run("results/report/summary.tsv", "--forcerun", "results/report/summary.tsv")
        assert second.returncode != 0 and "cannot be locked" in second.stdout + second.stderr
    finally:
        _out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-3000:]
    # the kills' reruns gave identical outputs, so the jobs after them need not rerun: mark them up to date
    assert study.run("--touch").returncode == 0 and study.planned() == {}


def test_a_hard_kill_of_the_whole_run_resumes_after_unlock(study: TinyStudy) -> None:
    """SIGKILL of Snakemake and its job (a lost node): the lock stays, docs/running.md's unlock + rerun-incomplete
    finish the work with the same outputs."""
    target, written = "results/models/astro/fold1/generator.pt", "results/models/astro/fold1"
    before = _snapshot(study.folder / written)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.Popen(
        study.command(target, "--forcerun", target),
        cwd=study.folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    incomplete = study.folder / ".snakemake" / "incomplete"  # Snakemake's marks of jobs under way
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None and not any(incomplete.glob("*")):
        time.sleep(0.02)
    assert run.poll() is None, "the training job finished before it could be killed"
    os.killpg(run.pid, 9)  # Snakemake and its job (same session)
    run.wait()
    refused = study.run(target)
    assert refused.returncode != 0 and "cannot be locked" in refused.stdout + refused.stderr
    assert study.run("--unlock").returncode == 0
    rerun = study.run(target, "--rerun-incomplete")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = _snapshot(study.folder / written)
    assert sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n)) == []
    assert not _temporaries(study.folder)
    assert study.run("--touch").returncode == 0 and study.planned() == {}
