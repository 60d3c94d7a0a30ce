"""`scisr upscale`: run a trained model on users' DICOM, FITS, PNG and TIFF files, back in their formats."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scisr.io.frame import Frame, ReadError
from scisr.io.isolated import IsolatedReader
from scisr.schema import schema_default

log = logging.getLogger(__name__)

EXIT_OK = 0  # every input upscaled and written
EXIT_ERROR = 1  # an unexpected failure (message printed; --debug shows the traceback)
EXIT_USAGE = 2  # bad command line (argparse), or outputs that would collide
EXIT_MODEL = 3  # the model folder is missing, unreadable, or does not fit the data (scale, channels)
EXIT_INPUT = 4  # one or more inputs could not be read or written; the others were written


class ModelMismatch(ValueError):
    """The model cannot be used as asked: no card, bad weights, or a scale/channel mismatch."""


@dataclass
class Options:
    """Everything `upscale_paths` needs besides the inputs."""

    model: Path
    out: Path
    scale: int | None = None
    tile: int = field(default_factory=lambda: schema_default("infer.tile"))
    overlap: int | None = field(default_factory=lambda: schema_default("infer.overlap"))  # None: auto
    batch: int = 1
    device: str = "cpu"
    threads: int | None = None
    hdu: str | None = None
    flux: str = "surface-brightness"
    range_mode: str = "extrapolate"
    anonymize: bool = False
    precision: str = "fp32"
    progress: bool = True
    uid_map: dict[str, str] = field(default_factory=dict)
    series_map: dict[str, str] = field(default_factory=dict)


BF16_NOTE = "bf16 preview: network run in bfloat16, LOSSY (not for measurement)"


@dataclass
class LoadedModel:
    """A model ready to run, with what its card says about its data."""

    net: object
    name: str
    arch: str
    scale: int
    normalization: dict
    device: object


def load(options: Options) -> LoadedModel:
    """Read the card, check it against the request, load the weights; ModelMismatch names the problem."""
    import torch

    from scisr.card import CardError, ModelCard
    from scisr.infer import load_model
    from scisr.models.device import resolve_device

    try:
        card = ModelCard.read(options.model)
    except CardError as error:
        raise ModelMismatch(str(error)) from None
    if options.scale is not None and options.scale != card.scale:
        raise ModelMismatch(
            f"{options.model}: the model upscales x{card.scale}, but --scale {options.scale} was asked for"
        )
    if int(card.args.get("scale", card.scale)) != card.scale:
        raise ModelMismatch(
            f"{options.model}: card scale {card.scale} but generator scale {card.args.get('scale')}; "
            "the card is inconsistent, rebuild the model"
        )
    if card.channels != 1:
        raise ModelMismatch(
            f"{options.model}: the model takes {card.channels}-channel images; DICOM/FITS/raster "
            "inputs are read as 1-channel (grey), so use a 1-channel (or channel-adapted) model"
        )
    if options.threads:
        torch.set_num_threads(options.threads)
    try:
        device = resolve_device(options.device)
        net = load_model(Path(options.model) / "generator.pt", card, device)  # the model folder's layout
    except Exception as error:  # torch.load and load_state_dict raise many kinds on a bad file
        text = " ".join(str(error).split())
        raise ModelMismatch(f"{options.model}: cannot load the generator: {text[:300]}") from None
    return LoadedModel(net, card.name, card.arch, card.scale, dict(card.normalization), device)


def plan_outputs(inputs: Sequence[str | os.PathLike], out: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(source, output) pairs for files and folders (a folder's files go to out/<folder name>/...), and problems."""
    pairs, problems = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(
                p
                for p in item.rglob("*")
                if p.is_file() and not any(x.startswith(".") for x in p.relative_to(item).parts)
            )
            if not files:
                problems.append(f"{item}: folder holds no files")
            pairs += [(p, out / item.resolve().name / p.relative_to(item)) for p in files]
        elif item.is_file():
            pairs.append((item, out / item.name))
        else:
            problems.append(f"{item}: no such file or folder")
    return pairs, problems


def upscale_paths(inputs: Sequence[str | os.PathLike], options: Options) -> int:
    """Upscale every input file into options.out; print one line per problem; return an exit code."""
    from tqdm import tqdm

    pairs, problems = plan_outputs(inputs, options.out)
    for problem in problems:
        print(f"scisr upscale: {problem}", file=sys.stderr)
    seen: dict[Path, Path] = {}
    for source, target in pairs:
        if target in seen:
            print(
                f"scisr upscale: {source} and {seen[target]} would both be written to {target}; "
                "upscale them in separate runs or rename one",
                file=sys.stderr,
            )
            return EXIT_USAGE
        seen[target] = source
    try:
        model = load(options)
    except ModelMismatch as error:
        print(f"scisr upscale: model error: {error}", file=sys.stderr)
        return EXIT_MODEL
    failed = bool(problems)
    if options.precision == "bf16":
        print(
            f"scisr upscale: {BF16_NOTE}; DICOM descriptions and FITS HISTORY record it, PNG/TIFF outputs cannot",
            file=sys.stderr,
        )
    files = tqdm(pairs, desc="files", unit="file", file=sys.stderr, disable=not options.progress, ascii=True)
    limits = schema_default("extract.reader_memory_mb"), schema_default("extract.reader_timeout_s")
    with IsolatedReader(memory_mb=limits[0], timeout_s=limits[1]) as reader:
        for source, target in files:
            try:
                written = upscale_file(source, target, model, options, reader)
                log.info("%s -> %s", source, written)
            except (ReadError, ModelMismatch, ValueError, OSError) as error:
                print(f"scisr upscale: {source}: {' '.join(str(error).split())}", file=sys.stderr)
                failed = True
    return EXIT_INPUT if failed else EXIT_OK


def upscale_file(source: Path, target: Path, model: LoadedModel, options: Options, reader: IsolatedReader) -> Path:
    """Read one file (in `reader`'s worker process), upscale each frame, write it in its own format; return the
    path written."""
    from scisr.io.readers import sniff

    kind = sniff(source)
    if kind == "fits":
        return _fits(source, target, model, options, reader)
    frames = reader.call("scisr.io.readers:read_frames", source)
    if kind.startswith("dicom"):
        return _dicom(source, target, frames, model, options)
    return _raster(source, target, frames, model, options)


def _hr_planes(planes, target: Path, model: LoadedModel, options: Options, label: str) -> Iterator[np.ndarray]:
    """Each LR plane upscaled in physical units, in a buffer (a memmap beside `target` when large).

    A buffer is valid until the next plane's.
    """
    from tqdm import tqdm

    from scisr.tiling import output_buffer
    from scisr.upscale.units import upscale_physical

    for i, plane in enumerate(planes):
        shape = (plane.shape[0] * model.scale, plane.shape[1] * model.scale)
        bar = tqdm(
            desc=f"{label} [{i}] tiles",
            unit="tile",
            file=sys.stderr,
            leave=False,
            disable=not options.progress,
            ascii=True,
        )

        def progress(done: int, total: int, bar: tqdm = bar) -> None:  # this plane's bar, bound now
            bar.total = total
            bar.update(done - bar.n)

        with output_buffer(shape, beside=target) as buffer:
            upscale_physical(
                model.net,
                plane,
                model.scale,
                model.normalization,
                buffer,
                range_mode=options.range_mode,
                tile=options.tile,
                overlap=options.overlap,
                batch=options.batch,
                device=model.device,
                progress=progress,
                precision=options.precision,
            )
            bar.close()
            yield buffer


def _description(model: LoadedModel, options: Options) -> str:
    return (
        f"SciSR x{model.scale} super-resolution, model {model.name} ({model.arch}); "
        f"input normalized as its training data, output in input units ({options.range_mode} out-of-range)"
        + (f"; {BF16_NOTE}" if options.precision == "bf16" else "")
    )


def _dicom(source: Path, target: Path, frames: list[Frame], model: LoadedModel, options: Options) -> Path:
    from pydicom.uid import generate_uid

    from scisr.io.dicom_writer import write_upscaled_dicom

    images = [np.array(plane) for plane in _hr_planes((f.image for f in frames), target, model, options, source.name)]
    old_series = frames[0].series_id
    series = options.series_map.setdefault(old_series, generate_uid())
    write_upscaled_dicom(
        source,
        target,
        images,
        model.scale,
        description=_description(model, options),
        series_uid=series,
        uid_map=options.uid_map,
        anonymize=options.anonymize,
    )
    return target


def _fits(source: Path, target: Path, model: LoadedModel, options: Options, reader: IsolatedReader) -> Path:
    from scisr.io.fits_writer import write_upscaled_fits

    index, planes = reader.call("scisr.io.fits:fits_planes", source, hdu=options.hdu)
    history = [f"model {model.name} ({model.arch}), x{model.scale}", f"out-of-range values: {options.range_mode}"]
    if options.precision == "bf16":
        history.append(BF16_NOTE)
    write_upscaled_fits(
        source,
        target,
        index,
        _hr_planes(planes, target, model, options, source.name),
        model.scale,
        flux=options.flux,
        history=history,
    )
    return target


def _raster(source: Path, target: Path, frames: list[Frame], model: LoadedModel, options: Options) -> Path:
    from scisr.io.raster_writer import output_suffix, write_upscaled_raster

    file_format = frames[0].meta.get("file_format", "")
    target = target.with_suffix(output_suffix(file_format))
    images = [np.array(plane) for plane in _hr_planes((f.image for f in frames), target, model, options, source.name)]
    clipped = write_upscaled_raster(target, images, file_format, frames[0].original_dtype)
    if clipped:
        print(
            f"scisr upscale: {source}: {clipped} pixels clipped to the {frames[0].original_dtype} range of "
            f"{target.suffix} (use a float TIFF or FITS to keep them)",
            file=sys.stderr,
        )
    return target
