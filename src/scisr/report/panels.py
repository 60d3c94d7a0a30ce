"""The example panel of each dataset: LR, the models' predictions and HR on its largest test image."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from PIL import Image

from scisr.io.files import read_png16
from scisr.prepare.split import pair_dirs
from scisr.report import figures

PathLike = str | os.PathLike
PANEL_CROP = 128


def _size_key(path: Path) -> tuple[int, str]:
    """Sort key of a candidate panel image: largest first, ties broken by name."""
    with Image.open(path) as im:
        width, height = im.size
    return -width * height, path.name


def _panel_image(hr_dir: Path) -> Path | None:
    """The test image shown in a panel: the largest HR image, ties broken by name."""
    candidates = sorted(hr_dir.glob("*.png"))
    return min(candidates, key=_size_key) if candidates else None


def _panel_models(models: list[str], dataset: str, *, baseline: str, generic: str) -> list[str]:
    """Panel columns between LR and HR: baseline, generic, the dataset's own model(s)."""
    own = sorted((m for m in models if m == dataset or m.startswith(f"{dataset}_")), key=lambda m: (m != dataset, m))
    return list(dict.fromkeys([m for m in (baseline, generic, *own) if m in models]))


def build_panel(
    dataset: str,
    tests: Mapping[int, PathLike],
    predictions: Mapping[str, Mapping[int, PathLike]],
    long: pd.DataFrame,
    out_path: PathLike,
    *,
    baseline: str,
    generic: str,
) -> str | None:
    """Write the dataset's panel figure to `out_path`; return its caption, or None without test images.

    `tests` {fold: test part}, `predictions` {model: {fold: prediction folder}}: the largest test image of any
    fold is shown with the predictions of that fold's model instances.
    """
    found = [(path, fold) for fold, test_dir in tests.items() if (path := _panel_image(pair_dirs(test_dir)[0]))]
    if not found:
        return None
    hr_path, fold = min(found, key=lambda pf: _size_key(pf[0]))
    lr_dir = pair_dirs(tests[fold])[1]
    hr = read_png16(hr_path)
    lr = read_png16(lr_dir / hr_path.name)
    scale = max(1, round(hr.shape[0] / lr.shape[0]))
    box = figures.centre_box(hr.shape, PANEL_CROP, multiple=scale)
    images = {"LR (nearest)": figures.nearest_upsample(lr, hr.shape)[box]}
    predictions = {m: Path(by_fold[fold]) for m, by_fold in predictions.items() if fold in by_fold}
    image_id = hr_path.stem
    psnr: dict[str, float] = {}
    shown = []
    for model in _panel_models(list(predictions), dataset, baseline=baseline, generic=generic):
        pred_path = predictions[model] / hr_path.name
        if not pred_path.exists():
            continue
        pred = read_png16(pred_path)
        if pred.shape != hr.shape:
            raise ValueError(f"{pred_path}: shape {pred.shape} differs from HR {hr.shape}; re-run inference")
        images[model] = pred[box]
        shown.append(model)
        hit = long[(long["model"] == model) & (long["dataset"] == dataset) & (long["image_id"] == image_id)]
        if not hit.empty:
            psnr[model] = float(hit["psnr"].iloc[0])
    images["HR"] = hr[box]
    side = box[0].stop - box[0].start
    title = (
        f"{dataset}: test image {image_id} ({hr.shape[1]}\u00d7{hr.shape[0]} px), centred {side}\u00d7{side} "
        f"HR crop; PSNR of the whole image"
    )
    figures.panel_figure(images, psnr, out_path, title=title)
    return (
        f"{dataset}: the largest test image ({image_id}), a centred {side}\u00d7{side} px crop. Top: LR "
        f"(nearest-neighbour enlarged \u00d7{scale} so pixels line up), {', '.join(shown)}, HR, all on the HR crop's "
        "0.5\u201399.5 percentile grey scale; titles give each prediction's PSNR on the whole image. "
        "Middle: the crop's most detailed region (highest local standard deviation of HR, orange frame above), "
        "enlarged on the same grey scale. Bottom: absolute error to HR on one colour scale shared by all columns."
    )
