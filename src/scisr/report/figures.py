"""Report figures: metrics per model and dataset, learning curves, image panels and the cross-domain heatmap
(the answer's figures, forest plot, per-subject plot and budget curves, are in scisr.report.answer_figures)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import ndimage

from scisr.io.files import atomic_path
from scisr.report.tables import LOWER_IS_BETTER

DPI = 110
METRIC_LABELS = {
    "rmse": "RMSE (lower is better)",
    "psnr": "PSNR, dB (higher is better)",
    "ssim": "SSIM (higher is better)",
}


# Okabe & Ito (2008) colour-blind-safe colours, in the order models receive them; grey for the baseline.
OKABE_ITO = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "bluish green": "#009E73",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "sky blue": "#56B4E9",
    "black": "#000000",
    "yellow": "#F0E442",
}
BASELINE_COLOUR = "#999999"


def _rgb(hex_colour: str) -> tuple[float, float, float]:
    """'#RRGGBB' as an (r, g, b) tuple in [0, 1]."""
    return tuple(int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5))


def model_palette(models: Sequence[str], baseline: str = "bicubic") -> dict[str, tuple[float, float, float]]:
    """One distinct colour per model, shared by every figure: grey baseline, then Okabe-Ito colours in order.

    Past eight non-baseline models the extra ones take evenly spaced HUSL hues (distinct, but no longer
    guaranteed colour-blind safe).
    """
    others = [m for m in dict.fromkeys(models) if m != baseline]
    colours = [_rgb(c) for c in OKABE_ITO.values()]
    if len(others) > len(colours):
        colours += list(sns.color_palette("husl", len(others) - len(colours)))
    palette = {m: colours[i] for i, m in enumerate(others)}
    if baseline in models:
        palette[baseline] = _rgb(BASELINE_COLOUR)
    return palette


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> None:
    """Save `fig` as PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def metrics_figure(
    long: pd.DataFrame,
    path: str | os.PathLike,
    *,
    models: Sequence[str],
    datasets: Sequence[str],
    palette: Mapping[str, tuple[float, float, float]] | None = None,
) -> None:
    """Per-image RMSE, PSNR, SSIM as dots with mean ± sd per model (hue) and dataset (x), one panel per metric."""
    data = long.copy()
    data["psnr"] = data["psnr"].where(np.isfinite(data["psnr"]))
    palette = dict(palette or model_palette(models))
    width = max(11.0, 1.3 * len(datasets) * max(1, len(models)) / 1.5 + 3)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, 3, figsize=(width, 3.9), layout="constrained")
        for ax, metric in zip(axes, ("rmse", "psnr", "ssim")):
            common = dict(
                data=data,
                x="dataset",
                y=metric,
                hue="model",
                order=list(datasets),
                hue_order=list(models),
                palette=palette,
                ax=ax,
            )
            state = np.random.get_state()  # stripplot jitters with numpy's global generator: seed it, so the
            np.random.seed(0)  # same scores draw the same figure
            try:
                sns.stripplot(**common, dodge=True, alpha=0.35, size=3.5, jitter=0.15, legend=False, zorder=1)
            finally:
                np.random.set_state(state)
            sns.pointplot(
                **common,
                dodge=0.8 - 0.8 / max(len(models), 1),
                errorbar="sd",
                linestyle="none",
                markers="D",
                markersize=5,
                capsize=0.08,
                err_kws={"linewidth": 1.4},
                legend=False,
            )
            ax.set_title(METRIC_LABELS[metric], fontsize=10)
            ax.set_xlabel("")
            ax.set_ylabel(metric.upper() if metric != "psnr" else "PSNR (dB)")
            ax.grid(axis="y", alpha=0.4)
            ax.set_axisbelow(True)
    handles = [plt.Line2D([], [], marker="D", linestyle="none", color=palette[m], label=m) for m in models]
    fig.legend(handles=handles, title="model", loc="outside right center", frameon=False)
    fig.suptitle("Test-set scores: dots = images, diamond and bar = mean ± sd", fontsize=11)
    save_figure(fig, path)


def learning_curves_figure(
    histories: Mapping[str, pd.DataFrame | Mapping[int, pd.DataFrame]],
    path: str | os.PathLike,
    *,
    models: Sequence[str],
    palette: Mapping[str, tuple[float, float, float]] | None = None,
) -> None:
    """Validation RMSE and PSNR against iteration per trained model (every fold's run in the model's colour);
    a dotted line where the GAN stage starts."""
    palette = dict(palette or model_palette(models))
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.9), layout="constrained")
    plotted, folded = [], False
    for model in models:
        runs = histories.get(model)
        if runs is None:
            continue
        runs = runs if isinstance(runs, Mapping) else {1: runs}
        folded = folded or len(runs) > 1
        colour = palette[model]
        for history in runs.values():
            hist = history.dropna(subset=["val_rmse"]).sort_values("iteration") if not history.empty else history
            if hist.empty:
                continue
            if model not in plotted:
                plotted.append(model)
            # the GAN stage starts right after the last row of the stages before it
            before_gan = hist.loc[hist["stage"] != "gan", "iteration"]
            gan_starts = before_gan.max() if (hist["stage"] == "gan").any() and not before_gan.empty else None
            width = 1.0 if len(runs) > 1 else 1.4
            for ax, column in zip(axes, ("val_rmse", "val_psnr")):
                ax.plot(
                    hist["iteration"],
                    hist[column],
                    color=colour,
                    marker="o",
                    markersize=2.5,
                    linewidth=width,
                    alpha=0.8 if len(runs) > 1 else 1.0,
                )
                if gan_starts is not None:
                    ax.axvline(gan_starts, color=colour, linestyle=":", linewidth=1.2)
    for ax, label in zip(axes, ("validation RMSE (lower is better)", "validation PSNR, dB (higher is better)")):
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.4)
    axes[0].set_ylabel("RMSE")
    axes[1].set_ylabel("PSNR (dB)")
    if plotted:
        handles = [plt.Line2D([], [], color=palette[m], marker="o", markersize=3, label=m) for m in plotted]
        handles.append(plt.Line2D([], [], color="0.3", linestyle=":", label="GAN stage starts"))
        fig.legend(handles=handles, title="model", loc="outside right center", frameon=False)
    else:
        for ax in axes:
            ax.text(0.5, 0.5, "no training history", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(
        "Learning curves on the validation split" + (" (one line per fold's run)" if folded else ""), fontsize=11
    )
    save_figure(fig, path)


def nearest_upsample(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D image to `shape`, so LR pixels line up with HR pixels."""
    rows = (np.arange(shape[0]) * image.shape[0]) // shape[0]
    cols = (np.arange(shape[1]) * image.shape[1]) // shape[1]
    return image[np.ix_(rows, cols)]


def centre_box(shape: tuple[int, int], size: int, multiple: int = 1) -> tuple[slice, slice]:
    """A centred square box of at most `size` px, its corner on a multiple of `multiple`."""
    side = min(size, shape[0], shape[1])
    top = ((shape[0] - side) // 2) // multiple * multiple
    left = ((shape[1] - side) // 2) // multiple * multiple
    return slice(top, top + side), slice(left, left + side)


def _panel_title(name: str, psnr: float | None) -> str:
    """Column title: the name and, when known, the image's PSNR."""
    if psnr is None or np.isnan(psnr):
        return name
    return f"{name}\nPSNR ∞" if np.isposinf(psnr) else f"{name}\nPSNR {psnr:.2f} dB"


def detail_box(image: np.ndarray, side: int) -> tuple[slice, slice]:
    """The `side`-px square of `image` with the most detail (highest local standard deviation)."""
    side = max(1, min(side, *image.shape))
    mean = ndimage.uniform_filter(image.astype(np.float64), size=side, mode="constant")
    mean_sq = ndimage.uniform_filter(image.astype(np.float64) ** 2, size=side, mode="constant")
    spread = mean_sq - mean**2
    half = side // 2
    valid = np.full(image.shape, -np.inf)
    valid[half : image.shape[0] - (side - half) + 1, half : image.shape[1] - (side - half) + 1] = 0
    centre = np.unravel_index(int(np.argmax(spread + valid)), image.shape)
    top, left = int(centre[0]) - half, int(centre[1]) - half
    return slice(top, top + side), slice(left, left + side)


def panel_figure(
    images: Mapping[str, np.ndarray],
    psnr: Mapping[str, float],
    path: str | os.PathLike,
    *,
    title: str,
    reference: str = "HR",
    zoom_side: int | None = None,
) -> None:
    """Crops side by side on one grey scale (top), a zoom on the most detailed part (middle), and the
    absolute error to `reference` on one shared colour scale (bottom).

    `images` is ordered left to right and already cropped to the same shape; `psnr` holds the titles' values.
    """
    names = list(images)
    ref = images[reference]
    lo, hi = np.percentile(ref, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(ref.min()), float(ref.min()) + 1e-6
    errors = {n: np.abs(images[n] - ref) for n in names if n != reference}
    err_hi = max([float(np.percentile(e, 99.5)) for e in errors.values()] + [1e-6])
    zoom = detail_box(ref, zoom_side or max(8, min(ref.shape) // 4))
    fig, axes = plt.subplots(3, len(names), figsize=(2.3 * len(names) + 0.6, 7.4), layout="constrained", squeeze=False)
    err_image = spare = None
    for col, name in enumerate(names):
        top, middle, bottom = axes[0, col], axes[1, col], axes[2, col]
        top.imshow(images[name], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        top.set_title(_panel_title(name, psnr.get(name)), fontsize=9)
        top.add_patch(
            plt.Rectangle(
                (zoom[1].start - 0.5, zoom[0].start - 0.5),
                zoom[1].stop - zoom[1].start,
                zoom[0].stop - zoom[0].start,
                fill=False,
                edgecolor=OKABE_ITO["orange"],
                linewidth=1.2,
            )
        )
        middle.imshow(images[name][zoom], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        for spine in middle.spines.values():
            spine.set_edgecolor(OKABE_ITO["orange"])
            spine.set_linewidth(1.5)
        if name in errors:
            err_image = bottom.imshow(errors[name], cmap="magma", vmin=0, vmax=err_hi, interpolation="nearest")
        else:
            bottom.set_facecolor("white")
        for ax in (top, middle, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
        if name not in errors:
            bottom.axis("off")
            spare = bottom
    side = zoom[0].stop - zoom[0].start
    axes[1, 0].set_ylabel(f"zoom: {side}\u00d7{side} px box", fontsize=9)
    axes[2, 0].set_ylabel("|image \u2212 HR|", fontsize=9)
    if err_image is not None and spare is not None:
        cax = spare.inset_axes((0.08, 0.04, 0.09, 0.92))
        fig.colorbar(err_image, cax=cax, label="absolute error to HR")
    elif err_image is not None:
        fig.colorbar(err_image, ax=axes[2, :].tolist(), shrink=0.85, label="absolute error to HR")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


HEATMAP_METRICS = {
    "psnr": ("\u0394PSNR, dB", 2, "\u0394PSNR, dB (blue = better)"),
    "rmse": ("\u0394RMSE", 4, "\u2212\u0394RMSE: RMSE removed (blue = better)"),
}
MARKS = {"better": "*", "worse": "*", "no significant difference": "ns", "too few subjects to tell": "?"}


def heatmap_figure(
    stats: pd.DataFrame,
    path: str | os.PathLike,
    *,
    models: Sequence[str],
    datasets: Sequence[str],
    baseline: str = "bicubic",
) -> None:
    """Every model x every dataset: mean difference to the baseline (PSNR and RMSE) with significance marks.

    Colour shows improvement (blue = better than the baseline, red = worse, for both metrics); cells
    print the subject-level mean difference and a mark: * significant after Holm, ns not significant,
    ? too few subjects to tell.
    """
    rows = [m for m in models if m != baseline]
    sel = stats[stats["reference"] == baseline] if not stats.empty else stats
    fig, axes = plt.subplots(
        1,
        len(HEATMAP_METRICS),
        figsize=(max(8.0, 2.6 + 1.5 * len(datasets)) * 1.6, 1.2 + 0.55 * max(len(rows), 1)),
        layout="constrained",
        squeeze=False,
    )
    for ax, (metric, (label, digits, bar)) in zip(axes[0], HEATMAP_METRICS.items()):
        values = np.full((len(rows), len(datasets)), np.nan)
        text = np.full((len(rows), len(datasets)), "", dtype=object)
        for i, model in enumerate(rows):
            for j, dataset in enumerate(datasets):
                hit = sel[(sel["model"] == model) & (sel["dataset"] == dataset) & (sel["metric"] == metric)]
                if hit.empty:
                    text[i, j] = "\u2013"
                    continue
                row = hit.iloc[0]
                values[i, j] = row["mean_diff"]
                text[i, j] = f"{row['mean_diff']:+.{digits}f} {MARKS.get(row['verdict'], '')}".replace("-", "\u2212")
        sign = 1.0 if not LOWER_IS_BETTER[metric] else -1.0
        limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
        sns.heatmap(
            sign * values,
            ax=ax,
            cmap="vlag_r",
            center=0,
            vmin=-(limit or 1.0),
            vmax=limit or 1.0,
            annot=text,
            fmt="",
            annot_kws={"fontsize": 8},
            linewidths=0.5,
            linecolor="white",
            xticklabels=list(datasets),
            yticklabels=rows,
            cbar_kws={"label": bar},
        )
        ax.set_facecolor("#eeeeee")
        ax.set_title(f"{label} to {baseline}", fontsize=10)
        ax.set_xlabel("test dataset")
        ax.set_ylabel("model")
        ax.tick_params(axis="y", rotation=0)
    fig.suptitle(
        f"Cross-domain matrix: difference to {baseline}, mean over subjects "
        "(* significant after Holm, ns not significant, ? too few subjects)",
        fontsize=10,
    )
    save_figure(fig, path)
