"""Synthetic collections for bench/scale.py: MR DICOM series with realistic headers, DIV2K-sized grey photos."""

from __future__ import annotations

from pathlib import Path


def write_series(folder: Path, subject: int, slices: int, size: int) -> None:
    """One subject's axial MR series of `slices` slices of size x size, one DICOM file each."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    rng = np.random.default_rng(subject)
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    yy, xx = np.mgrid[:size, :size] / size - 0.5
    head = ((yy / 0.42) ** 2 + (xx / 0.36) ** 2 < 1).astype(np.float64)
    texture = rng.random((size // 8, size // 8)).repeat(8, axis=0).repeat(8, axis=1)
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID, ds.PatientName = f"SCALE{subject:05d}", f"SCALE^{subject:05d}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.ImageType, ds.Manufacturer = "MR", ["ORIGINAL", "PRIMARY", "M", "ND"], "SYNTHETIC"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-120.0, -120.0, 2.0 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [240.0 / size, 240.0 / size], 2.0
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, 0.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        shade = 0.6 + 0.4 * np.sin(np.pi * (k + 1) / (slices + 1))
        pixels = 300 + 2500 * head * shade * (0.7 + 0.3 * texture) + rng.normal(0, 30, head.shape)
        ds.PixelData = np.clip(pixels, 0, 4095).astype(np.uint16).tobytes()
        ds.save_as(folder / f"IM{k:05d}.dcm", enforce_file_format=True)


def write_photos(folder: Path, count: int) -> None:
    """`count` smooth random grey 16-bit PNGs of 2040 x 1400 (DIV2K's size), split into train and val parts."""
    import numpy as np
    from scipy.ndimage import zoom

    from scisr.io.files import write_png16
    from scisr.prepare.resize import imresize

    for i in range(count):
        part = "val" if i < 2 else "train"
        rng = np.random.default_rng(i)
        hr = np.clip(zoom(rng.random((35, 51)), 40, order=3)[:1400, :2040] + 0.05 * rng.random((1400, 2040)), 0, 1)
        write_png16(folder / part / "HR" / f"p{i:04d}.png", hr)
        write_png16(folder / part / "LR" / f"p{i:04d}.png", np.clip(imresize(hr, 0.25), 0, 1))
