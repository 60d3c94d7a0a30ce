"""Robust per-image intensity normalization to [0,1], its inverse, and the normalize phase."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from scisr.checks import normalize_problems
from scisr.index import read_index
from scisr.io.files import (
    atomic_path,
    link_or_copy,
    read_tiff,
    remove_stale,
    write_tiff,
)
from scisr.units import unit_of

STRETCHES = ("none", "asinh")
PARAMS_COLUMNS = [
    "image_id",
    "low_value",
    "high_value",
    "stretch",
    "asinh_a",
    "nan_count",
    "crop_top",
    "crop_left",
    "rows",
    "cols",
    "status",
    "reason",
    "sha256",
]


def normalize_image(
    image: np.ndarray,
    *,
    low_percentile: float,
    high_percentile: float,
    stretch: str,
    asinh_a: float,
    clip: bool = True,
) -> tuple[np.ndarray, dict]:
    """Map an image to [0,1] between two percentiles (optionally asinh-stretched); NaN -> 0.

    With ``clip=False`` values outside the percentiles are mapped by the same formula (below 0, above 1),
    so `denormalize` inverts every pixel exactly.
    """
    if stretch not in STRETCHES:
        raise ValueError(f"unknown stretch {stretch!r}; choose one of {', '.join(STRETCHES)}")
    if not 0 <= low_percentile < high_percentile <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {low_percentile}, {high_percentile}")
    if stretch == "asinh" and not asinh_a > 0:
        raise ValueError(f"asinh_a must be > 0, got {asinh_a}")
    values = np.asarray(image, dtype=np.float64)
    nan_mask = np.isnan(values)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError("image has no finite values; nothing to normalize")
    low, high = np.percentile(finite, [low_percentile, high_percentile])
    if not high > low:
        raise ValueError(
            f"image is constant between the {low_percentile} and {high_percentile} percentiles "
            f"(both {low:g}); it cannot be normalized"
        )
    scaled = (np.where(nan_mask, low, values) - low) / (high - low)
    if clip:
        scaled = np.clip(scaled, 0.0, 1.0)
    if stretch == "asinh":
        scaled = np.arcsinh(scaled / asinh_a) / np.arcsinh(1.0 / asinh_a)
    scaled[nan_mask] = 0.0
    params = {
        "low_value": float(low),
        "high_value": float(high),
        "stretch": stretch,
        "asinh_a": float(asinh_a),
        "nan_count": int(nan_mask.sum()),
    }
    return scaled.astype(np.float32), params


def denormalize(norm: np.ndarray, params: dict) -> np.ndarray:
    """Map normalized values back to physical units (exact inverse of `normalize_image` where unclipped)."""
    y = np.asarray(norm, dtype=np.float64)
    if params["stretch"] == "asinh":
        a = float(params["asinh_a"])
        y = a * np.sinh(y * np.arcsinh(1.0 / a))
    elif params["stretch"] != "none":
        raise ValueError(f"unknown stretch {params['stretch']!r}")
    low, high = float(params["low_value"]), float(params["high_value"])
    return y * (high - low) + low


def crop_to_multiple(image: np.ndarray, scale: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Centre-crop so that both dimensions are multiples of `scale`; return the crop and its (top, left)."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    rows, cols = image.shape[:2]
    if rows < scale or cols < scale:
        raise ValueError(f"image of {rows}x{cols} is smaller than the scale {scale}")
    top, left = (rows % scale) // 2, (cols % scale) // 2
    new_rows, new_cols = rows - rows % scale, cols - cols % scale
    return image[top : top + new_rows, left : left + new_cols], (top, left)


def pixel_digest(image: np.ndarray) -> str:
    """sha256 of a normalized image's float32 pixels (C order): params.tsv's `sha256`, the split's content key."""
    return hashlib.sha256(np.ascontiguousarray(image, dtype=np.float32).tobytes()).hexdigest()


def read_digests(params_path: str | os.PathLike) -> dict[str, str]:
    """{image_id: sha256} of the images normalized successfully ({} for a params.tsv written before the column)."""
    table = pd.read_csv(params_path, sep="\t", dtype=str, keep_default_na=False)
    if "sha256" not in table.columns:
        return {}
    ok = table[(table["status"] == "ok") & (table["sha256"] != "")]
    return dict(zip(ok["image_id"], ok["sha256"]))


def read_params(params_path: str | os.PathLike) -> dict[str, dict]:
    """Read params.tsv into {image_id: params} for the images normalized successfully (for `denormalize`)."""
    table = pd.read_csv(params_path, sep="\t", dtype={"image_id": str, "stretch": str, "status": str})
    missing = [c for c in ("image_id", "low_value", "high_value", "stretch", "asinh_a", "status") if c not in table]
    if missing:
        raise ValueError(f"{params_path}: missing column(s) {', '.join(missing)}; rerun the normalize phase")
    ok = table[table["status"] == "ok"]
    return {
        str(row.image_id): {
            "low_value": float(row.low_value),
            "high_value": float(row.high_value),
            "stretch": str(row.stretch),
            "asinh_a": float(row.asinh_a),
        }
        for row in ok.itertuples()
    }


def normalize_dataset(
    index_path: str | os.PathLike,
    frames_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    params_path: str | os.PathLike,
    *,
    low_percentile: float,
    high_percentile: float,
    stretch: str,
    asinh_a: float,
    scale: int,
    unit: int = 1,
    units: int = 1,
) -> pd.DataFrame:
    """Normalize and crop every 'ok' frame of index.tsv; write out_dir/<image_id>.tif and params.tsv.

    With `units` > 1 only the frames of work unit `unit` (their subjects', `scisr.units.unit_of`) are done;
    `gather_normalized` joins the units' outputs into the dataset's, equal to what one job writes.
    """
    problems = normalize_problems({"low_percentile": low_percentile, "high_percentile": high_percentile})
    if problems:
        raise ValueError("normalize settings: " + "; ".join(problems))
    if not 1 <= unit <= units:
        raise ValueError(f"unit {unit} is not one of 1..{units}")
    frames_dir, out_dir = Path(frames_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = read_index(index_path)
    ok = index[index["status"] == "ok"]
    mine = [unit_of(subject, units) == unit for subject in ok["subject_id"]]
    records, written = [], set()
    for image_id in ok.loc[mine, "image_id"]:
        frame_path = frames_dir / f"{image_id}.tif"
        if not frame_path.exists():
            raise FileNotFoundError(f"{frame_path}: listed as ok in {index_path} but missing; rerun extract")
        record = dict.fromkeys(PARAMS_COLUMNS, "")
        record.update(image_id=image_id, status="ok")
        try:
            norm, params = normalize_image(
                read_tiff(frame_path),
                low_percentile=low_percentile,
                high_percentile=high_percentile,
                stretch=stretch,
                asinh_a=asinh_a,
            )
            cropped, (top, left) = crop_to_multiple(norm, scale)
        except ValueError as error:
            record.update(status="skipped", reason=f"{frame_path.name}: {error}")
            records.append(record)
            continue
        write_tiff(out_dir / f"{image_id}.tif", cropped)
        written.add(f"{image_id}.tif")
        record.update(
            params,
            crop_top=top,
            crop_left=left,
            rows=cropped.shape[0],
            cols=cropped.shape[1],
            sha256=pixel_digest(cropped),
        )
        records.append(record)
    remove_stale(out_dir, "*.tif", written)
    return write_params(pd.DataFrame(records, columns=PARAMS_COLUMNS), params_path)


def gather_normalized(
    index_path: str | os.PathLike,
    units: list[tuple[str | os.PathLike, str | os.PathLike]],
    out_dir: str | os.PathLike,
    params_path: str | os.PathLike,
) -> pd.DataFrame:
    """The dataset's normalized images (hard links to the units' files) and params.tsv (rows in index order) from
    the work units' (params.tsv, images folder) pairs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    order = {image_id: n for n, image_id in enumerate(read_index(index_path)["image_id"])}
    tables, written = [], set()
    for params, folder in units:
        table = pd.read_csv(params, sep="\t", dtype=str, keep_default_na=False)
        for image_id in table.loc[table["status"] == "ok", "image_id"]:
            link_or_copy(Path(folder) / f"{image_id}.tif", out_dir / f"{image_id}.tif")
            written.add(f"{image_id}.tif")
        tables.append(table)
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=PARAMS_COLUMNS)
    unknown = sorted(set(table["image_id"]) - set(order))
    if unknown:
        raise ValueError(f"{unknown[0]}: normalized by a unit but not in {index_path}; rerun the normalize units")
    table = table.sort_values("image_id", key=lambda ids: ids.map(order), kind="stable")
    remove_stale(out_dir, "*.tif", written)
    return write_params(table[PARAMS_COLUMNS].reset_index(drop=True), params_path)


def write_params(table: pd.DataFrame, params_path: str | os.PathLike) -> pd.DataFrame:
    """Write params.tsv atomically (the one writer; `read_params` reads it); return the table."""
    with atomic_path(params_path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table
