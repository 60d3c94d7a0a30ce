"""Is bf16 training as good as fp32? The same model, data and schedule trained in both, over several seeds.

For each seed: `fp32` (amp off) and `bf16` (bf16 autocast) train the default study's generator and schedule
(config/config.yaml's `train` block, validated by config/train.schema.yaml) through `scisr.train.train`, the
workflow's own entry point, on the same split of scikit-image photographs (grey, x4 MATLAB-bicubic LR; shipped
with scikit-image, so it runs offline); `bf16 long` trains in bf16 for as many iterations as fit in the fp32
run's wall time (the schedule's milestones scaled alike), to compare at equal wall time. Each run's exported
(EMA) generator is scored on the validation images (val RMSE / PSNR from the model card, border = scale).

Printed: per seed and precision, val PSNR, val RMSE, training seconds; the fp32 seed-to-seed spread (max - min
over seeds); the mean bf16 - fp32 difference and whether it lies within that spread; the training-time ratio;
and the equal-wall-time comparison. Usage:
  PYTHONPATH=src python bench/bf16_quality.py [--seeds 0 1 2] [--threads 1] [--scale-iterations 1.0]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from skimage import color, data
from snakemake.utils import validate

from scisr.card import ModelCard
from scisr.io.files import write_png16
from scisr.models.device import bf16_support
from scisr.prepare.resize import imresize
from scisr.prepare.split import pair_dirs
from scisr.train import Settings, TrainJob, train

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["camera", "astronaut", "coffee", "rocket", "brick", "grass", "gravel"]
VAL = ["coins", "chelsea", "clock"]
NORMALIZATION = {"low_percentile": 0.0, "high_percentile": 100.0, "stretch": "none", "asinh_a": 0.1}


def photo(name: str, scale: int = 4, side: int = 192) -> np.ndarray:
    """A scikit-image photograph as a grey float image in [0, 1], centre-cropped to `side` (a multiple of scale)."""
    image = getattr(data, name)()
    if image.ndim == 3:
        image = color.rgb2gray(image[..., :3])
    image = image.astype(np.float64)
    image = (image - image.min()) / max(image.max() - image.min(), 1e-12)
    h, w = image.shape
    top, left = (h - side) // 2, (w - side) // 2
    return image[top : top + side, left : left + side]


def make_split(root: Path, scale: int = 4) -> Path:
    """train/ and val/ parts (HR and LR 16-bit PNGs) of the photographs above."""
    for part, names in (("train", TRAIN), ("val", VAL)):
        hr_dir, lr_dir = pair_dirs(root / part)
        for name in names:
            hr = photo(name, scale)
            write_png16(hr_dir / f"{name}.png", hr)
            write_png16(lr_dir / f"{name}.png", np.clip(imresize(hr, 1 / scale), 0, 1))
    return root


def default_settings(seed: int, factor: float = 1.0) -> dict:
    """The default study's training settings with `seed`, iterations and milestones scaled by `factor`."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    settings = copy.deepcopy(config["train"])
    validate(settings, str(ROOT / "config" / "train.schema.yaml"))
    for stage in ("pixel", "gan"):
        settings[stage]["iterations"] = max(1, round(settings[stage]["iterations"] * factor))
        settings[stage]["milestones"] = [round(m * factor) for m in settings[stage]["milestones"]]
    return {**settings, "seed": seed, "scale": config["scale"]}


def run(split: Path, out: Path, seed: int, amp: str, threads: int, factor: float = 1.0) -> dict:
    """Train one model; return its val PSNR, val RMSE and training seconds (from the model card)."""
    settings = default_settings(seed, factor)
    settings["amp"] = amp
    train(
        TrainJob(
            train_dir=split / "train",
            val_dir=split / "val",
            generator=out / "generator.pt",
            history=out / "history.tsv",
            card=out / "model.yaml",
            checkpoint_dir=out / "ckpt",
            settings=Settings.from_dict(settings),
            name="bench",
            dataset="photos",
            normalization=NORMALIZATION,
            device="cpu",
            threads=threads,
        )
    )
    card = ModelCard.read(out / "model.yaml")
    final = card.training["final_validation"]
    return {
        "psnr": final["val_psnr"],
        "rmse": final["val_rmse"],
        "seconds": card.total_wall_seconds,
        "iterations": card.total_iterations,
        "precision": card.training["precision"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--scale-iterations",
        type=float,
        default=1.0,
        help="multiply the default schedule's iterations (for a quicker look)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _supported, reason = bf16_support(torch.device("cpu"))
    machine = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.lower().startswith("model name")
        ),
        "?",
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# torch {torch.__version__}, {machine}, {args.threads} thread(s), load average {load}; {reason}")
    results: dict[str, list[dict]] = {"fp32": [], "bf16": [], "bf16 long": []}
    with tempfile.TemporaryDirectory() as tmp:
        split = make_split(Path(tmp) / "split")
        for seed in args.seeds:
            f = args.scale_iterations
            fp32 = run(split, Path(tmp) / f"fp32-{seed}", seed, "off", args.threads, f)
            bf16 = run(split, Path(tmp) / f"bf16-{seed}", seed, "bf16", args.threads, f)
            long = run(
                split, Path(tmp) / f"long-{seed}", seed, "bf16", args.threads, f * fp32["seconds"] / bf16["seconds"]
            )
            for name, row in (("fp32", fp32), ("bf16", bf16), ("bf16 long", long)):
                results[name].append(row)
                print(
                    f"seed {seed} {name:<9} {row['iterations']:>5} it  val PSNR {row['psnr']:.3f} dB  "
                    f"val RMSE {row['rmse']:.5f}  {row['seconds']:.1f} s",
                    flush=True,
                )
    mean = {
        name: {k: statistics.mean(r[k] for r in rows) for k in ("psnr", "rmse", "seconds")}
        for name, rows in results.items()
    }
    spread = {k: max(r[k] for r in results["fp32"]) - min(r[k] for r in results["fp32"]) for k in ("psnr", "rmse")}
    diff = {k: mean["bf16"][k] - mean["fp32"][k] for k in ("psnr", "rmse")}
    print(f"\n| precision | val PSNR dB (mean over {len(args.seeds)} seeds) | val RMSE | training s | it |")
    print("|---|---|---|---|---|")
    for name, rows in results.items():
        seeds = ", ".join(f"{r['psnr']:.3f}" for r in rows)
        print(
            f"| {name} | {mean[name]['psnr']:.3f} ({seeds}) | "
            f"{mean[name]['rmse']:.5f} | {mean[name]['seconds']:.1f} | {rows[0]['iterations']} |"
        )
    print(f"\nfp32 seed-to-seed spread (max - min): PSNR {spread['psnr']:.3f} dB, RMSE {spread['rmse']:.5f}")
    for k, unit in (("psnr", " dB"), ("rmse", "")):
        inside = abs(diff[k]) <= spread[k]
        print(
            f"bf16 - fp32, mean {k.upper()}: {diff[k]:+.5f}{unit} -> {'within' if inside else 'OUTSIDE'} the "
            "fp32 seed spread"
        )
    print(f"training time fp32 / bf16: {mean['fp32']['seconds'] / mean['bf16']['seconds']:.2f}x")
    print(
        f"at equal wall time (bf16 long, {mean['bf16 long']['seconds']:.1f} s vs fp32 {mean['fp32']['seconds']:.1f} s):"
        f" PSNR {mean['bf16 long']['psnr'] - mean['fp32']['psnr']:+.3f} dB, RMSE "
        f"{mean['bf16 long']['rmse'] - mean['fp32']['rmse']:+.5f}"
    )


if __name__ == "__main__":
    main()
