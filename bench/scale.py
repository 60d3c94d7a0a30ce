"""How cost grows with the collection: the data phases and training's data loading on synthetic collections.

Collections, written once into --workdir and reused:
- MRI: synthetic MR DICOM series, one subject = one axial series of 100 slices (Explicit VR Little Endian,
  12 bits stored in 16, MONOCHROME2, PatientID, Study/Series/SOP instance UIDs, ImagePositionPatient,
  ImageOrientationPatient, PixelSpacing, SliceThickness, RescaleSlope/Intercept, ImageType ORIGINAL), a smooth
  head-like phantom with noise; `--sizes` slices in all, `--slice` pixels square (256 or 512).
- Photos: `--photos` DIV2K-sized grey 16-bit PNGs of 2040 x 1400 (DIV2K's HR training set has 800 of about
  that size), smooth random texture.
Each phase runs in a fresh subprocess (its peak RSS is its own: os.wait4's ru_maxrss), through the library
entry points the workflow's rules call: download (`scisr.sources.fetch`, kind local: copy + MANIFEST),
extract, normalize, split (a single holdout, with the training store), and training's data loading
(`scisr.prepare.store.open_part` + `PatchSampler`: 96-px HR patches, batch 16, for --seconds). For the photos,
`train` runs `scisr.train.train` for a few iterations of a small SRResNet on the 2040 x 1400 pairs without a
split store (the run writes its own store first), to show training's peak RSS against the in-memory loading it
replaced (every pair as float32: 12 bytes per HR pixel with its LR).

Printed: per collection and phase, wall seconds, seconds per 1000 slices, peak RSS (MiB); patches per second
(one process, `torch.set_num_threads(1)`: per core). Usage:
  PYTHONPATH=src python bench/scale.py [--sizes 1000 10000] [--slice 256] [--photos 450] [--workdir DIR]
      [--seconds 10] [--keep] [--units N]
With --units N (> 1) the data phases run as the workflow's per-unit jobs, one process each, one after another:
the phase's "s" is the sum of its jobs (all the work), "longest unit s" what N cores or cluster nodes would wait
for before the gather, "gather s" the gather's own time; peak RSS is the largest job's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from synthetic_collections import write_photos, write_series  # bench/, first on sys.path for a script

ROOT = Path(__file__).resolve().parents[1]
SLICES_PER_SUBJECT = 100
PHASES = ("download", "extract", "normalize", "split", "load")


def settings(section: str) -> dict:
    """A dataset's `section` with the schema's defaults (config/schema.yaml is where they live)."""
    from snakemake.utils import validate

    config = {
        "datasets": {"d": {"source": {"kind": "local", "path": "."}, section: {}}},
        "models": {"m": {"data": "d"}},
        "evaluate": ["d"],
    }
    validate(config, str(ROOT / "config" / "schema.yaml"))
    return config["datasets"]["d"][section]


def phase(name: str, work: Path, source: Path, seconds: float) -> dict:
    """Run one phase in this process (the child); return what it reports beside time and memory."""
    raw, results = work / "raw", work / "results"
    if name == "download":
        from scisr.sources import fetch

        shutil.rmtree(raw, ignore_errors=True)
        fetch({"kind": "local", "path": str(source)}, raw, raw / "MANIFEST.tsv")
        return {}
    if ":" in name:  # a work unit or gather of the workflow's per-unit jobs: "<phase>:<unit or gather>:<units>"
        return unit_phase(name, work)
    if name == "extract":
        from scisr.extract import extract_dataset

        frames = settings("frames")
        table = extract_dataset(
            raw,
            raw / "MANIFEST.tsv",
            results / "frames",
            results / "index.tsv",
            secret=work / "secret.key",
            key_map=work / "deid.tsv",
            dataset="mri",
            modalities=["MR"],
            frames=frames,
        )
        return {"images": int((table["status"] == "ok").sum())}
    if name == "normalize":
        from scisr.prepare.normalize import normalize_dataset

        normalize_dataset(
            results / "index.tsv",
            results / "frames",
            results / "norm",
            results / "params.tsv",
            low_percentile=0.5,
            high_percentile=99.5,
            stretch="none",
            asinh_a=0.1,
            scale=4,
        )
        return {}
    if name == "split":
        from scisr.prepare.split import split_dataset

        split = settings("split") | {"degradation": "kspace"}
        parts = {part: results / "split" / "fold1" / part for part in ("train", "val", "test")}
        split_dataset(
            results / "index.tsv",
            results / "norm",
            parts,
            results / "split.tsv",
            scale=4,
            seed=0,
            dataset="mri",
            store_dir=results / "store",
            params_path=results / "params.tsv",
            **split,
        )
        return {}
    if name == "load":
        import torch

        from scisr.prepare.store import open_part
        from scisr.train.data import PatchSampler

        torch.set_num_threads(1)
        sampler = PatchSampler(open_part(results / "split" / "fold1" / "train", results / "store"), 4, 96, seed=0)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            sampler.sample(16)
            count += 16
        return {"patches_per_s": count / (time.perf_counter() - start)}
    if name == "train":
        from snakemake.utils import validate

        from scisr.train import Settings, TrainJob, train

        cfg = {
            "generator": {"arch": "srresnet", "channels": 16, "blocks": 2},
            "batch_size": 16,
            "patch_size": 96,
            "pixel": {"iterations": 20, "milestones": []},
            "gan": {"iterations": 0},
            "val_every": 10**6,
            "checkpoint_every": 10**6,
            "ema": 0,
        }
        validate(cfg, str(ROOT / "config" / "train.schema.yaml"))
        out = work / "model"
        train(
            TrainJob(
                train_dir=source / "train",
                val_dir=source / "val",
                generator=out / "generator.pt",
                history=out / "history.tsv",
                card=out / "model.yaml",
                checkpoint_dir=work / "ckpt",
                settings=Settings.from_dict({**cfg, "seed": 0, "scale": 4}),
                name="scale",
                dataset="photos",
                normalization={},
                device="cpu",
                threads=2,
            )
        )
        return {}
    raise ValueError(name)


def unit_phase(name: str, work: Path) -> dict:
    """One job of the workflow's per-unit data phases, through the entry points its rules call (rules/extract.smk,
    normalize.smk, split.smk): `<phase>:<n>:<units>` runs unit n, `<phase>:gather:<units>` the phase's gather."""
    phase_name, which, count = name.split(":")
    units = int(count)
    raw, results = work / "raw", work / "results"
    unit_dir = results / "units" / phase_name
    numbers = range(1, units + 1)
    if phase_name == "extract" and which == "gather":
        from scisr.extract_gather import gather_units

        gather_units(
            [(unit_dir / f"{u}" / "candidates.tsv", unit_dir / f"{u}" / "frames") for u in numbers],
            results / "frames",
            results / "index.tsv",
            dataset="mri",
            key_maps=[unit_dir / f"{u}" / "keys.tsv" for u in numbers],
            key_map=work / "deid.tsv",
        )
    elif phase_name == "extract":
        from scisr.extract import extract_unit

        folder = unit_dir / which
        extract_unit(
            raw,
            raw / "MANIFEST.tsv",
            folder / "frames",
            folder / "candidates.tsv",
            secret=work / "secret.key",
            key_map=folder / "keys.tsv",
            unit=int(which),
            units=units,
            modalities=["MR"],
            frames=settings("frames"),
        )
    elif phase_name == "normalize" and which == "gather":
        from scisr.prepare.normalize import gather_normalized

        gather_normalized(
            results / "index.tsv",
            [(unit_dir / f"{u}" / "params.tsv", unit_dir / f"{u}" / "images") for u in numbers],
            results / "norm",
            results / "params.tsv",
        )
    elif phase_name == "normalize":
        from scisr.prepare.normalize import normalize_dataset

        folder = unit_dir / which
        normalize_dataset(
            results / "index.tsv",
            results / "frames",
            folder / "images",
            folder / "params.tsv",
            low_percentile=0.5,
            high_percentile=99.5,
            stretch="none",
            asinh_a=0.1,
            scale=4,
            unit=int(which),
            units=units,
        )
    elif phase_name == "split" and which == "plan":
        from scisr.prepare.split import plan_split

        split = settings("split")
        plan_split(
            results / "index.tsv",
            results / "norm",
            results / "split.tsv",
            folds=1,
            scale=4,
            seed=0,
            dataset="mri",
            params_path=results / "params.tsv",
            **{k: split[k] for k in ("fractions", "tile_size", "min_foreground", "slab_gap", "pointing_tolerance")},
        )
    elif phase_name == "split" and which == "gather":
        from scisr.prepare.split import gather_split

        parts = {part: results / "split" / "fold1" / part for part in ("train", "val", "test")}
        gather_split(
            results / "split.tsv",
            [(unit_dir / f"{u}" / "pairs", unit_dir / f"{u}" / "store") for u in numbers],
            parts,
            store_dir=results / "store",
        )
    elif phase_name == "split":
        from scisr.prepare.split import degrade_unit

        folder = unit_dir / which
        degrade_unit(
            results / "split.tsv",
            results / "norm",
            folder / "pairs",
            scale=4,
            seed=0,
            degradation="kspace",
            degradation_options=settings("split")["degradation_options"],
            unit=int(which),
            units=units,
            store_dir=folder / "store",
        )
    else:
        raise ValueError(name)
    return {}


def unit_jobs(units: int) -> list[tuple[str, list[str]]]:
    """(phase, its jobs in the order the workflow's dependencies allow) for the per-unit data phases."""
    numbers = [str(u) for u in range(1, units + 1)]
    return [
        ("download", ["download"]),
        ("extract", [f"extract:{u}:{units}" for u in numbers] + [f"extract:gather:{units}"]),
        ("normalize", [f"normalize:{u}:{units}" for u in numbers] + [f"normalize:gather:{units}"]),
        ("split", [f"split:plan:{units}"] + [f"split:{u}:{units}" for u in numbers] + [f"split:gather:{units}"]),
        ("load", ["load"]),
    ]


def run_child(name: str, work: Path, source: Path, seconds: float) -> dict:
    """One phase in a fresh process: wall seconds, peak RSS (MiB) and the phase's own report."""
    report = work / f".{name}.json"
    command = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--work",
        str(work),
        "--source",
        str(source),
        "--seconds",
        str(seconds),
        "--report",
        str(report),
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    error = proc.stderr.read().decode(errors="replace")[-2000:]
    if status:
        raise RuntimeError(f"{name} failed ({status}):\n{error}")
    return {"seconds": wall, "rss_mib": usage.ru_maxrss / 1024, **json.loads(report.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--slice", type=int, default=256, choices=(256, 512))
    parser.add_argument("--photos", type=int, default=450)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the data-loading phase samples")
    parser.add_argument("--keep", action="store_true", help="keep the collections and results")
    parser.add_argument(
        "--units",
        type=int,
        default=1,
        help="run extract, normalize and split as the workflow's per-unit jobs (compute.data_units)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        Path(args.report).write_text(json.dumps(phase(args.child, Path(args.work), Path(args.source), args.seconds)))
        return
    base = Path(args.workdir or tempfile.mkdtemp(prefix="scisr-scale-"))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# {os.cpu_count()} CPUs, load average {load}; work in {base}; one process per phase")
    print(f"{'collection':24} {'phase':10} {'s':>8} {'s/1000 slices':>14} {'peak RSS MiB':>13}  other")
    first: dict[str, float] = {}
    for size in args.sizes:
        source = base / f"mri{size}x{args.slice}"
        if not (source / ".done").exists():
            start = time.perf_counter()
            for subject in range(size // SLICES_PER_SUBJECT):
                write_series(source / f"s{subject:05d}", subject, SLICES_PER_SUBJECT, args.slice)
            (source / ".done").touch()
            print(f"# wrote {size} slices of {args.slice}^2 in {time.perf_counter() - start:.0f} s")
        work = base / f"run{size}x{args.slice}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        for name, jobs in unit_jobs(args.units) if args.units > 1 else [(name, [name]) for name in PHASES]:
            rows = [run_child(job, work, source, args.seconds) for job in jobs]
            row = {
                "seconds": sum(r["seconds"] for r in rows),
                "rss_mib": max(r["rss_mib"] for r in rows),
                **{k: v for r in rows for k, v in r.items() if k not in ("seconds", "rss_mib")},
            }
            if len(jobs) > 1:  # per-unit jobs: what a cluster waits for is the longest unit, then the gather
                times = dict(zip(jobs, (r["seconds"] for r in rows)))
                row["longest unit s"] = max(t for j, t in times.items() if j.split(":")[1].isdigit())
                row["gather s"] = times[jobs[-1]]
            # the loading phase samples for a fixed time: its figure is patches per second, not seconds
            per = row["patches_per_s"] if name == "load" else row["seconds"] / size * 1000
            first.setdefault(name, per)
            other = ", ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in row.items()
                if k not in ("seconds", "rss_mib")
            )
            growth = f" ({per / first[name]:.2f}x the first size)" if size != args.sizes[0] else ""
            shown = f"{'':14}" if name == "load" else f"{per:14.2f}"
            print(
                f"{source.name:24} {name:10} {row['seconds']:8.1f} {shown} {row['rss_mib']:13.0f}  {other}{growth}",
                flush=True,
            )
        if not args.keep:
            shutil.rmtree(work)
    if args.photos:
        source = base / f"photos{args.photos}"
        if not (source / ".done").exists():
            start = time.perf_counter()
            write_photos(source, args.photos)
            (source / ".done").touch()
            print(f"# wrote {args.photos} photos of 2040x1400 in {time.perf_counter() - start:.0f} s")
        work = base / "train-photos"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        row = run_child("train", work, source, args.seconds)
        in_memory = (args.photos - 2) * 2040 * 1400 * 4 * (1 + 1 / 16) / 2**20
        print(
            f"{source.name:24} {'train':10} {row['seconds']:8.1f} {'':14} {row['rss_mib']:13.0f}  20 iterations of "
            f"SRResNet-2x16 incl. writing its store; the pairs in memory as float32 would be {in_memory:.0f} MiB"
        )
        if not args.keep:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
