"""SLURM execution: the cluster profile, and a real run on a single-node SLURM cluster.

The real run is opt-in (SCISR_SLURM_TEST=1; CI sets it): as root on Debian 12 it installs
and starts munged, MariaDB, slurmdbd, slurmctld and slurmd with one fake GPU
(.ci/slurm/start.sh), runs the mri and astro chains of a tiny study through
`--executor slurm` (tests/data/slurm-profile, tests/data/slurm.yaml), and checks from
SLURM's own accounting that every non-local job ran there, that the GPU jobs each got the
one GPU and never overlapped, and that the deterministic phases match a local run byte
for byte. The daemons are always stopped (.ci/slurm/stop.sh), also when something fails.
"""

from __future__ import annotations

import datetime as dt
import filecmp
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, snakemake_command

ENABLE = "SCISR_SLURM_TEST"
START = ROOT / ".ci" / "slurm" / "start.sh"
STOP = ROOT / ".ci" / "slurm" / "stop.sh"
PROFILE = ROOT / "tests" / "data" / "slurm-profile"
CONFIG = ROOT / "tests" / "data" / "slurm.yaml"
# Two chains: mri (two models scored) and astro (trained). After split/mri the GPU jobs
# train/mri and infer/bicubic/mri are submitted together, and train/astro soon after:
# SLURM, with one GPU, has to hold them back and run them one by one.
TARGETS = [
    "results/score/mri/mri/fold1.tsv",
    "results/score/bicubic/mri/fold1.tsv",
    "results/models/astro/fold1/generator.pt",
]
DATASETS = ["mri", "astro"]
LOCAL_RULES = {"download"}
GPU_RULES = {"train", "infer"}
DAEMONS = ["slurmctld", "slurmd", "slurmdbd", "slurmstepd", "mariadbd", "munged"]
SACCT_FIELDS = "JobID,JobName,Comment,State,ExitCode,Submit,Start,End,AllocTRES,ReqTRES"


def run(cmd: list[str], cwd: Path, log: Path, timeout: int) -> subprocess.CompletedProcess:
    """Run `cmd` with stdout+stderr in `log` (never a pipe: daemons may inherit it)."""
    with log.open("w") as out:
        result = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    result.stdout = log.read_text(errors="replace")
    return result


def snakemake_cmd(exe: str, work: Path, *args: str) -> list[str]:
    """snakemake on this repository's Snakefile in `work` with the SLURM test's config, the targets first."""
    # profiles/default (local; `resources: gpu=1`) would otherwise be merged in as the
    # workflow profile and serialize GPU jobs in Snakemake, not in SLURM.
    return snakemake_command(
        exe,
        work,
        *TARGETS,
        "--workflow-profile",
        "none",
        *args,
        configfiles=[work / "config" / "config.yaml", CONFIG],
        cores=None,
    )


def job_stats(output: str) -> dict[str, int]:
    """Rule -> job count from Snakemake's 'Job stats' table."""
    lines = output.split("Job stats:", 1)[1].splitlines()
    counts = {}
    for line in lines[3:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


# --- always: the cluster profile is valid ---------------------------------------------------


def test_slurm_profile_requests_gpus_for_train_and_infer() -> None:
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    assert {"slurm_partition", "slurm_account", "mem_mb", "runtime"} <= set(profile["default-resources"])
    for rule in GPU_RULES:
        resources = profile["set-resources"][rule]
        assert "gpu" not in resources, "GPU counts come from the config (compute.gpus x train.gpus)"
        assert {"cpus_per_gpu", "mem_mb", "runtime"} <= set(resources)
    assert profile["set-threads"]["train"] >= 1
    assert profile["slurm-init-seconds-before-status-checks"] > 0
    ci = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert ci["executor"] == "slurm" and ci["default-resources"]["slurm_account"]


@pytest.mark.slow  # a Snakemake dry run of the full-scale study
def test_slurm_profile_plans_the_study(snakemake_exe: str, tmp_path: Path) -> None:
    """A dry run with the cluster profile needs no cluster and shows the GPU requests."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    cmd = snakemake_command(
        snakemake_exe,
        tmp_path,
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--workflow-profile",
        "none",
        "--dry-run",
        cores=None,
        configfiles=[tmp_path / "config" / "config.yaml", ROOT / "config" / "study.yaml"],
    )
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    blocks = result.stdout.split("\nrule ")
    train = [b for b in blocks if b.startswith("train:")]
    assert train and all(re.search(r"resources: .*\bgpu=1\b.*\bcpus_per_gpu=8\b", b) for b in train), train[:1]
    # generic once; mri, astro, mri_ft, astro_ft (from generic), mri_ftp, astro_ftp (from pretrained) once per
    # fold of study.yaml's 5-fold cross-validation: 1 + 6 x 5 training jobs SLURM can place side by side
    assert job_stats(result.stdout)["train"] == 1 + 6 * 5


# --- opt-in: a real SLURM cluster -------------------------------------------------------------


@dataclass
class Cluster:
    base: Path  # scratch folder: state/, start.log, the two runs, sacct.txt
    state: Path


def _preconditions() -> None:
    if os.environ.get(ENABLE) != "1":
        pytest.skip(
            f"real SLURM run disabled; enable with {ENABLE}=1 (root on Debian 12 with apt-get: "
            "installs and starts munged, MariaDB, slurmdbd, slurmctld, slurmd for the test)"
        )
    if os.geteuid() != 0:
        pytest.skip(f"{ENABLE}=1 but not running as root: .ci/slurm/start.sh must install packages and start daemons")
    tools = ["slurmctld", "slurmd", "slurmdbd", "sacct", "sacctmgr", "munged", "mariadbd"]
    if not shutil.which("apt-get") and not all(shutil.which(t) for t in tools):
        pytest.skip(f"{ENABLE}=1 but apt-get is missing and SLURM is not installed (needs Debian/Ubuntu)")


def _running_daemons() -> list[str]:
    """'PID command' of every running cluster daemon (pgrep patterns over 15 characters never match)."""
    found = [subprocess.run(["pgrep", "-a", "-x", name], capture_output=True, text=True).stdout for name in DAEMONS]
    return "".join(found).splitlines()


@pytest.fixture
def slurm_cluster(request):
    _preconditions()
    failed_before = request.session.testsfailed
    before = _running_daemons()
    # Not pytest's tmp_path: its parents are mode 700, and mariadbd runs as user mysql.
    base = Path(tempfile.mkdtemp(prefix="scisr-slurm-", dir="/tmp"))
    base.chmod(0o755)
    cluster = Cluster(base=base, state=base / "state")
    try:
        t0 = time.monotonic()
        started = run(["bash", str(START), str(cluster.state)], ROOT, base / "start.log", timeout=900)
        if started.returncode != 0:
            logs = "".join(
                f"\n--- {log.name} (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                for log in sorted((cluster.state / "log").glob("*"))
                if log.is_file()
            )
            pytest.fail(f"{START.name} failed (rc {started.returncode}):\n{started.stdout[-4000:]}{logs}")
        print(f"cluster up in {time.monotonic() - t0:.0f} s")
        yield cluster
    finally:
        stopped = run(["bash", str(STOP), str(cluster.state)], ROOT, base / "stop.log", timeout=300)
        left = [p for p in _running_daemons() if p not in before]
        if stopped.returncode != 0 or left:
            pytest.fail(f"stop.sh rc {stopped.returncode}; daemons left running: {left}\n{stopped.stdout}")
        if request.session.testsfailed == failed_before:
            shutil.rmtree(base, ignore_errors=True)
        else:  # the cluster's logs (state/log), the runs' logs and outputs
            shutil.rmtree(cluster.state / "mysql", ignore_errors=True)
            print(f"kept {base} for inspection")


def _sacct(since: str, expected: int) -> list[dict[str, str]]:
    """All jobs in SLURM's accounting, once `expected` of them have finished."""
    deadline = time.monotonic() + 60
    while True:
        out = subprocess.run(
            ["sacct", "-X", "-a", "--parsable2", "-S", since, "-o", SACCT_FIELDS],
            capture_output=True,
            text=True,
            timeout=60,
        )
        rows = []
        if out.returncode == 0 and out.stdout.strip():
            header, *lines = out.stdout.strip().splitlines()
            rows = [dict(zip(header.split("|"), line.split("|"))) for line in lines]
        done = len(rows) >= expected and all(r["End"] not in ("", "Unknown") for r in rows)
        if done or time.monotonic() > deadline:
            assert out.returncode == 0, f"sacct failed: {out.stderr}"
            return rows
        time.sleep(2)


def _table(rows: list[dict[str, str]]) -> str:
    fields = ["JobID", "Rule", "State", "Submit", "Start", "End", "ReqTRES", "AllocTRES"]
    body = [
        [r["JobID"], r["Comment"], r["State"], r["Submit"], r["Start"], r["End"], r["ReqTRES"], r["AllocTRES"]]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(fields, *body)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)) for line in [fields, *body])


def _rule_of(comment: str) -> str:
    """The plugin comments each job `rule_<rule>` or `rule_<rule>_wildcards_<values>`."""
    match = re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", comment)
    assert match, f"unexpected SLURM job comment {comment!r}"
    return match.group(1)


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


def _files(folder: Path) -> dict[str, Path]:
    return {str(p.relative_to(folder)): p for p in sorted(folder.rglob("*")) if p.is_file()}


def test_study_runs_on_a_real_slurm_cluster(slurm_cluster: Cluster, snakemake_exe: str, capsys) -> None:
    base = slurm_cluster.base
    work, local = base / "slurm-run", base / "local-run"
    for folder in (work, local):
        shutil.copytree(ROOT / "config", folder / "config")

    plan = run(snakemake_cmd(snakemake_exe, work, "--dry-run"), work, base / "plan.log", timeout=300)
    assert plan.returncode == 0, plan.stdout[-4000:]
    planned = job_stats(plan.stdout)
    remote = {rule: n for rule, n in planned.items() if rule not in LOCAL_RULES}
    assert set(remote) == {
        "extract_unit",
        "extract",
        "normalize_unit",
        "normalize",
        "split_plan",
        "split_unit",
        "split",
        "train",
        "infer",
        "score",
    }, planned

    since = (dt.datetime.now() - dt.timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    t0 = time.monotonic()
    result = run(
        snakemake_cmd(snakemake_exe, work, "--profile", str(PROFILE)), work, base / "slurm-run.log", timeout=1200
    )
    wall = time.monotonic() - t0

    # Snakemake's side: which SLURM job ran which rule, and the run's UUID (the job name).
    submitted = dict(
        re.findall(r"has been submitted with SLURM jobid (\d+) \(log: \S*/slurm_logs/rule_([^/\s]+)/", result.stdout)
    )
    run_id = re.search(r"SLURM run ID: (\S+)", result.stdout)
    # SLURM's side: every job in this cluster's accounting (the cluster is this test's alone),
    # shown in CI's log whether the run passed or not.
    rows = _sacct(since, len(submitted))
    table = _table(rows)
    (base / "sacct.txt").write_text(table + "\n")
    with capsys.disabled():
        outcome = "completed" if result.returncode == 0 else f"FAILED (rc {result.returncode})"
        print(f"\n\nSLURM run {outcome} in {wall:.0f} s; its jobs in SLURM's accounting (sacct), {len(rows)} jobs:")
        print(table + "\n")
    assert result.returncode == 0, f"snakemake --executor slurm failed:\n{result.stdout[-6000:]}"
    assert run_id, "the plugin did not log its run ID"

    # (a) every non-local job ran under SLURM and completed; the local ones did not.
    by_rule: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_rule.setdefault(_rule_of(row["Comment"]), []).append(row)
    assert {rule: len(jobs) for rule, jobs in by_rule.items()} == remote, (
        f"SLURM jobs per rule differ from the plan {remote}:\n{table}"
    )
    assert sorted(submitted) == sorted(r["JobID"] for r in rows), f"submitted {submitted}\n{table}"
    for row in rows:
        assert row["JobName"] == run_id.group(1), f"job {row['JobID']} is not from this run:\n{table}"
        assert submitted[row["JobID"]] == _rule_of(row["Comment"]), row
        assert row["State"] == "COMPLETED" and row["ExitCode"] == "0:0", f"job {row['JobID']}:\n{table}"
    for name in DATASETS:
        assert (work / f"resources/raw/{name}/MANIFEST.tsv").is_file()  # downloaded locally
    for target in TARGETS:
        assert (work / target).is_file(), target

    # (b) GPU jobs got the (one) GPU, other jobs none; GPU jobs never overlapped, and SLURM
    # did hold back a GPU job that was submitted while another one held the GPU.
    gpu_jobs = []
    for row in rows:
        wants_gpu = _rule_of(row["Comment"]) in GPU_RULES
        for tres in ("ReqTRES", "AllocTRES"):
            assert ("gres/gpu=1" in row[tres].split(",")) == wants_gpu, f"{tres} of job {row['JobID']}:\n{table}"
        if wants_gpu:
            gpu_jobs.append(row)
    assert len(gpu_jobs) == remote["train"] + remote["infer"]
    gpu_jobs.sort(key=lambda r: _time(r["Start"]))
    for first, second in itertools.pairwise(gpu_jobs):
        assert _time(second["Start"]) >= _time(first["End"]), (
            f"GPU jobs {first['JobID']} and {second['JobID']} overlapped:\n{table}"
        )
    held = [
        (a["JobID"], b["JobID"])
        for a in gpu_jobs
        for b in gpu_jobs
        if a is not b
        and _time(b["Submit"]) < _time(a["End"])
        and _time(b["Start"]) >= _time(a["End"])
        and _time(b["Submit"]) >= _time(a["Submit"])
    ]
    assert held, f"no GPU job ever waited for the GPU, so the limit was not exercised:\n{table}"

    # (c) extract, normalize and split are deterministic: byte-identical to a local run.
    # the same per-study secret gives the same pseudonymous ids (docs/deid.md)
    (local / "resources").mkdir(parents=True, exist_ok=True)
    shutil.copy2(work / "resources" / "secret.key", local / "resources" / "secret.key")
    local_targets = [f"results/split/{name}/store" for name in DATASETS]  # the split gather: plan, units, parts
    cmd = snakemake_cmd(snakemake_exe, local, "--cores", "2")
    cmd = [cmd[0], *local_targets, *cmd[1 + len(TARGETS) :]]
    here = run(cmd, local, base / "local-run.log", timeout=600)
    assert here.returncode == 0, here.stdout[-4000:]
    for name in DATASETS:
        for phase, wanted in [("extract", (".tsv", ".tif")), ("normalize", (".tif",)), ("split", (".tsv", ".png"))]:
            ours = {k: p for k, p in _files(work / "results" / phase / name).items() if p.suffix in wanted}
            theirs = {k: p for k, p in _files(local / "results" / phase / name).items() if p.suffix in wanted}
            assert ours and sorted(ours) == sorted(theirs), f"{phase}/{name}: file lists differ"
            for suffix in wanted:
                assert any(k.endswith(suffix) for k in ours), f"{phase}/{name}: no {suffix} files"
            differ = [k for k in ours if not filecmp.cmp(ours[k], theirs[k], shallow=False)]
            assert not differ, f"{phase}/{name}: SLURM and local outputs differ: {differ[:10]}"
