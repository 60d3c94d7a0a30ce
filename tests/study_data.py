"""Small generated studies for grouping and de-identification tests, and the library chain
download -> extract -> normalize -> split that the workflow runs on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from astropy.io import fits
from conftest import dataset_settings
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from scisr.extract import extract_dataset
from scisr.prepare.normalize import normalize_dataset
from scisr.prepare.split import split_dataset
from scisr.sources import fetch

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def write_series(
    folder: Path,
    n: int = 40,
    *,
    patient_id: str = "P0001",
    patient_name: str = "ANON^PERSON",
    birth_date: str = "19000101",
    size: int = 32,
    spacing: float = 2.5,
    seed: int = 0,
) -> list[Path]:
    """An axial MR series of `n` slices (one file each, named out of position order), like a scanner's."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    study, series = generate_uid(), generate_uid()
    yy, xx = np.mgrid[:size, :size]
    paths = []
    order = rng.permutation(n)  # file names do not follow the slice order
    for k in range(n):
        z = float(order[k]) * spacing
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.PatientName, ds.PatientBirthDate = patient_id, patient_name, birth_date
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.ImageType = "MR", ["ORIGINAL", "PRIMARY", "M", "ND"]
        ds.InstanceNumber = int(order[k]) + 1
        ds.ImagePositionPatient = [-40.0, -40.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (4 + order[k] / 4) ** 2))
        pixels = 200 + 1500 * blob + rng.normal(0, 20, blob.shape)
        ds.PixelData = np.clip(pixels, 0, 4095).astype(np.uint16).tobytes()
        path = folder / f"IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_fits(
    path: Path,
    ra: float,
    dec: float,
    *,
    size: int = 64,
    pixel_arcsec: float = 1.0,
    obj: str = "",
    wcs: bool = True,
    seed: int = 0,
) -> None:
    """A FITS image with a TAN WCS centred on (ra, dec) (or only RA/DEC pointing keywords)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(100, 5, (size, size)).astype(np.float32)
    for _ in range(6):  # a few stars
        y, x = rng.integers(4, size - 4, 2)
        data[y - 1 : y + 2, x - 1 : x + 2] += 500
    header = fits.Header()
    if wcs:
        header.update(
            CTYPE1="RA---TAN",
            CTYPE2="DEC--TAN",
            CRVAL1=ra,
            CRVAL2=dec,
            CRPIX1=(size + 1) / 2,
            CRPIX2=(size + 1) / 2,
            CDELT1=-pixel_arcsec / 3600,
            CDELT2=pixel_arcsec / 3600,
            CUNIT1="deg",
            CUNIT2="deg",
        )
    else:
        header.update(RA=ra, DEC=dec)
    if obj:
        header["OBJECT"] = obj
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)


def run_chain(source_dir: Path, work: Path, **split_options) -> dict[str, Path]:
    """download (local source) -> extract -> normalize -> split, as the workflow's rules call them."""
    raw = work / "resources" / "raw" / "data"
    fetch({"kind": "local", "path": str(source_dir)}, raw, raw / "MANIFEST.tsv")
    paths = {
        "secret": work / "resources" / "secret.key",
        "key_map": work / "resources" / "deid" / "data.tsv",
        "index": work / "results" / "extract" / "data" / "index.tsv",
        "frames": work / "results" / "extract" / "data" / "frames",
        "norm": work / "results" / "normalize" / "data" / "images",
        "params": work / "results" / "normalize" / "data" / "params.tsv",
        "split": work / "results" / "split" / "data",
        "table": work / "results" / "split" / "data" / "split.tsv",
    }
    extract_dataset(
        raw,
        raw / "MANIFEST.tsv",
        paths["frames"],
        paths["index"],
        secret=paths["secret"],
        key_map=paths["key_map"],
        dataset="data",
        frames=split_options.pop("frames", None),
    )
    normalize_dataset(
        paths["index"],
        paths["frames"],
        paths["norm"],
        paths["params"],
        low_percentile=0.5,
        high_percentile=99.5,
        stretch="none",
        asinh_a=0.1,
        scale=4,
    )
    options = {**dataset_settings("split"), "fractions": FRACTIONS, "seed": 0, "tile_size": None, **split_options}
    parts = {split: paths["split"] / split for split in ("train", "val", "test")}
    split_dataset(paths["index"], paths["norm"], parts, paths["table"], scale=4, dataset="data", **options)
    return paths


__all__ = ["FRACTIONS", "pydicom", "run_chain", "write_fits", "write_series"]
