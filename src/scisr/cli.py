"""The `scisr` command: inspect scientific image files and score predictions."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from scisr.io.limits import DEFAULT_MAX_BYTES


def _info(args: argparse.Namespace) -> int:
    """Print what SciSR reads from each file: frames, size, dtype, value range.

    A bad file gets one line on stderr (never a traceback) and makes the exit status 1.
    """
    from scisr.io import NotAnImageError, ReadError
    from scisr.io.readers import read_frames

    status = 0
    for path in args.files:
        try:
            frames = read_frames(path, max_bytes=args.max_bytes)
        except NotAnImageError as error:
            print(f"{path}: not an image: {error}", file=sys.stderr)
            status = 1
            continue
        except ReadError as error:
            print(f"{path}: cannot read: {error}", file=sys.stderr)
            status = 1
            continue
        except Exception as error:  # a reader bug: still one line, not a traceback
            print(f"{path}: cannot read: unexpected {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr)
            status = 1
            continue
        for frame in frames:
            image = frame.image
            finite = image[np.isfinite(image)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)
            print(
                f"{path}\tframe {frame.frame}\t{image.shape[0]}x{image.shape[1]}\t"
                f"{frame.modality or '-'}\t{frame.original_dtype}\t"
                f"range [{low:g}, {high:g}]\tsubject {frame.subject_id or '-'}"
                + ("\tlossy" if frame.lossy else "")
            )
    return status


def _score(args: argparse.Namespace) -> int:
    """Score a folder of predictions against a folder of HR PNGs."""
    from scisr.metrics import score_folder

    table = score_folder(args.predictions, args.hr, args.out, border=args.border)
    means = table[["rmse", "psnr", "ssim"]].replace([np.inf], np.nan).mean()
    print(f"{len(table)} images: RMSE {means['rmse']:.5f}  PSNR {means['psnr']:.3f} dB  SSIM {means['ssim']:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="scisr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="what SciSR reads from DICOM/FITS/PNG/JPEG/TIFF files")
    info.add_argument("files", nargs="+")
    info.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help="refuse files declaring more decoded pixel bytes than this (default 1 GiB)",
    )
    info.set_defaults(func=_info)
    score = commands.add_parser("score", help="RMSE, PSNR, SSIM of predicted PNGs against HR PNGs")
    score.add_argument("predictions", help="folder of predicted 16-bit PNGs")
    score.add_argument("hr", help="folder of HR 16-bit PNGs with the same names")
    score.add_argument("--out", required=True, help="TSV to write (image_id, rmse, psnr, ssim)")
    score.add_argument("--border", type=int, default=4, help="pixels cropped at each side (default: the scale, 4)")
    score.set_defaults(func=_score)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `scisr` command."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
