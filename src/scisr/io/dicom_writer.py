"""DICOM writer for upscaled images: a derived series whose geometry, units and windows match the source.

Conventions:
- New SeriesInstanceUID (one per source series, shared by its files) and SOPInstanceUID; ImageType
  (and enhanced FrameType) DERIVED\\SECONDARY; DerivationDescription and a SeriesDescription suffix
  name SciSR and the model; SourceImageSequence points at the source instance.
- Rows/Columns x scale; PixelSpacing (and ImagerPixelSpacing) / scale; ImagePositionPatient moved
  by (1/(2 scale) - 1/2) of the old spacing along both image axes, so every source pixel centre keeps
  its patient-space position; orientation kept. Enhanced multi-frame objects stay multi-frame, with
  the per-frame and shared functional groups (PixelMeasures, PlanePosition, FrameType, pixel value
  transformation) updated.
- Pixels are 16-bit with RescaleSlope/Intercept chosen so every value fits without clipping: the
  source's slope (its quantization step) when the range fits in 16 bits at that step, else
  range/65535; the source intercept when the values fit, else the minimum. Window centre/width keep
  their physical values. MONOCHROME1 and colour sources become MONOCHROME2 (the readers return
  high = bright values; windows are mirrored accordingly).
- NaN pixels are stored as the lowest value; overlays, icons and pixel-range attributes of the
  source size are dropped.
- `anonymize=True` applies the PS3.15 basic application level confidentiality profile: identifying
  attributes are removed (X) or emptied (Z), UIDs replaced consistently through `uid_map` (U),
  private tags removed, PatientIdentityRemoved YES.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from scisr.io.files import atomic_path

# PS3.15 Table E.1-1, basic profile: the identifying attributes we handle (keyword -> action).
_EMPTY = (  # Z: type 2, keep empty
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "ContentDate",
    "ContentTime",
)
_REMOVE = (  # X
    "PatientBirthTime",
    "OtherPatientIDs",
    "OtherPatientIDsSequence",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientMotherBirthName",
    "MilitaryRank",
    "BranchOfService",
    "MedicalRecordLocator",
    "EthnicGroup",
    "Occupation",
    "AdditionalPatientHistory",
    "PatientComments",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "PatientInsurancePlanCodeSequence",
    "PatientReligiousPreference",
    "MedicalAlerts",
    "Allergies",
    "SmokingStatus",
    "PregnancyStatus",
    "LastMenstrualDate",
    "ResponsiblePerson",
    "ResponsibleOrganization",
    "IssuerOfPatientID",
    "CountryOfResidence",
    "RegionOfResidence",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "InstitutionCodeSequence",
    "StationName",
    "OperatorsName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "ScheduledPerformingPhysicianName",
    "DeviceSerialNumber",
    "PlateID",
    "DetectorID",
    "GantryID",
    "CassetteID",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionTime",
    "AcquisitionDateTime",
    "InstanceCreationDate",
    "InstanceCreationTime",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepID",
    "PerformedProcedureStepDescription",
    "RequestAttributesSequence",
    "ReferencedStudySequence",
    "ReferencedPatientSequence",
    "ReferencedPerformedProcedureStepSequence",
    "StudyDescription",
    "ImageComments",
    "AdmittingDiagnosesDescription",
    "ProtocolName",
    "RequestedProcedureDescription",
    "ReasonForTheRequestedProcedure",
    "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest",
    "ScheduledProcedureStepDescription",
    "TextComments",
    "ContentCreatorName",
    "ReferencedImageSequence",
    "SourceImageSequence",
    "TimezoneOffsetFromUTC",
    "ProcedureCodeSequence",
    "AdmissionID",
    "ServiceEpisodeID",
    "VisitComments",
    "CurrentPatientLocation",
)
_UIDS = (  # U: replaced consistently within a run
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "ReferencedSOPInstanceUID",
    "ReferencedFrameOfReferenceUID",
    "SynchronizationFrameOfReferenceUID",
    "DimensionOrganizationUID",
    "ConcatenationUID",
    "IrradiationEventUID",
    "MediaStorageSOPInstanceUID",
)
_DROPPED = (
    "IconImageSequence",
    "SmallestImagePixelValue",
    "LargestImagePixelValue",
    "PixelPaddingValue",
    "PixelPaddingRangeLimit",
    "SmallestPixelValueInSeries",
    "LargestPixelValueInSeries",
    "FloatPixelData",
    "DoubleFloatPixelData",
    "RedPaletteColorLookupTableDescriptor",
    "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData",
    "PlanarConfiguration",
)


def storage(low: float, high: float, step: float, intercept: float) -> tuple[float, float, bool, int]:
    """(slope, intercept, signed, bits stored) so that [low, high] fits 16-bit stored values without clipping."""
    step = step if step > 0 else 1.0
    if (high - low) / step > 65535:
        step = (high - low) / 65535
    lo, hi = (low - intercept) / step, (high - intercept) / step
    if round(lo) >= 0 and round(hi) <= 65535:
        signed = False
    elif round(lo) >= -32768 and round(hi) <= 32767:
        signed = True
    else:
        intercept, signed = low, False
        lo, hi = 0.0, (high - low) / step
    top = max(abs(round(lo)), abs(round(hi)), 1)
    bits = min(16, max(8, int(top).bit_length() + (1 if signed else 0)))
    return float(step), float(intercept), signed, bits


def write_upscaled_dicom(
    source: str | os.PathLike,
    out: str | os.PathLike,
    frames: Sequence[np.ndarray],
    scale: int,
    *,
    description: str,
    series_uid: str,
    uid_map: dict[str, str] | None = None,
    anonymize: bool = False,
) -> Dataset:
    """Write `frames` (HR physical values, one per source frame) as a derived copy of DICOM `source`."""
    ds = pydicom.dcmread(source)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if len(frames) != n_frames:
        raise ValueError(f"{Path(source).name}: {len(frames)} upscaled frames for {n_frames} source frames")
    old_slope, old_intercept = _source_rescale(ds)
    mirror = _mirror(ds) if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1" else None
    stack = np.stack([np.asarray(f, dtype=np.float64) for f in frames])
    finite = stack[np.isfinite(stack)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    slope, intercept, signed, bits = storage(low, high, old_slope, old_intercept)
    stored = np.round((np.where(np.isfinite(stack), stack, low) - intercept) / slope)
    stored = stored.astype(np.int16 if signed else np.uint16)

    source_ref = (str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")))
    for keyword in _DROPPED:
        if keyword in ds:
            delattr(ds, keyword)
    for tag in [t for t in ds.keys() if 0x6000 <= t.group <= 0x60FF and t.group % 2 == 0]:  # noqa: SIM118 (a Dataset iterates over its elements, keys() over tags)
        del ds[tag]  # overlays are at the source size
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.set_pixel_data(stored if n_frames > 1 else stored[0], "MONOCHROME2", bits, generate_instance_uid=False)
    if n_frames > 1:
        ds.NumberOfFrames = n_frames
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    _set_rescale(ds, slope, intercept)
    if mirror is not None:
        _mirror_windows(ds, mirror)
    _set_derived(ds, description, source_ref)
    _scale_geometry(ds, scale)
    if anonymize:
        deidentify(ds, uid_map if uid_map is not None else {})
    with atomic_path(out) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return ds


def _source_rescale(ds: Dataset) -> tuple[float, float]:
    """The first frame's (slope, intercept): per-frame, shared, then top level; (1, 0) without any."""
    for group in _items(ds, "PerFrameFunctionalGroupsSequence")[:1] + _items(ds, "SharedFunctionalGroupsSequence"):
        seq = group.get("PixelValueTransformationSequence")
        if seq and "RescaleSlope" in seq[0]:
            return float(seq[0].RescaleSlope), float(seq[0].get("RescaleIntercept", 0.0))
    return float(ds.get("RescaleSlope", 1.0) or 1.0), float(ds.get("RescaleIntercept", 0.0) or 0.0)


def _mirror(ds: Dataset) -> float:
    """For MONOCHROME1: c such that the reader's value v = c - u (u = the rescaled stored value)."""
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    lo, hi = (
        (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if int(ds.get("PixelRepresentation", 0)) == 1 else (0, 2**bits - 1)
    )
    slope, intercept = _source_rescale(ds)
    return (lo + hi) * slope + 2 * intercept


def _mirror_windows(ds: Dataset, c: float) -> None:
    if "WindowCenter" in ds:
        centres = ds.WindowCenter if ds["WindowCenter"].VM > 1 else [ds.WindowCenter]
        ds.WindowCenter = (
            [round(c - float(w), 4) for w in centres] if len(centres) > 1 else round(c - float(centres[0]), 4)
        )


def _items(ds: Dataset, keyword: str) -> list[Dataset]:
    return list(ds.get(keyword) or [])


def _groups(ds: Dataset) -> list[Dataset]:
    """Shared and per-frame functional group items of an enhanced object (empty for a classic one)."""
    return _items(ds, "SharedFunctionalGroupsSequence") + _items(ds, "PerFrameFunctionalGroupsSequence")


def _set_rescale(ds: Dataset, slope: float, intercept: float) -> None:
    placed = False
    for group in _groups(ds):
        seq = group.get("PixelValueTransformationSequence")
        if seq:
            seq[0].RescaleSlope, seq[0].RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"
            placed = True
    if not placed and "SharedFunctionalGroupsSequence" in ds:
        item = Dataset()
        item.RescaleSlope, item.RescaleIntercept, item.RescaleType = f"{slope:.10g}", f"{intercept:.10g}", "US"
        ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence = DicomSequence([item])
        placed = True
    if placed:
        for keyword in ("RescaleSlope", "RescaleIntercept"):
            if keyword in ds:
                delattr(ds, keyword)
    else:
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:.10g}", f"{intercept:.10g}"


def _set_derived(ds: Dataset, description: str, source_ref: tuple[str, str]) -> None:
    old = list(ds.ImageType) if "ImageType" in ds and ds["ImageType"].VM > 1 else [str(ds.get("ImageType", ""))]
    ds.ImageType = ["DERIVED", "SECONDARY"] + [str(v) for v in old[2:]]
    for group in _groups(ds):
        for element in group:
            if element.VR == "SQ" and element.keyword.endswith("FrameTypeSequence"):
                for item in element.value:
                    if "FrameType" in item:
                        item.FrameType = ["DERIVED", "SECONDARY"] + [str(v) for v in list(item.FrameType)[2:]]
    ds.DerivationDescription = description[:1024]
    ds.SeriesDescription = (str(ds.get("SeriesDescription", "") or "").strip() + " SciSR")[-64:].strip()
    if all(source_ref):
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = source_ref
        ds.SourceImageSequence = DicomSequence([ref])


def _scale_geometry(ds: Dataset, scale: int) -> None:
    """PixelSpacing / scale and ImagePositionPatient shifted so pixel centres keep their positions."""
    shared = _items(ds, "SharedFunctionalGroupsSequence")
    per_frame = _items(ds, "PerFrameFunctionalGroupsSequence")
    if per_frame or shared:
        for group in shared + per_frame:
            for item in _items(group, "PixelMeasuresSequence"):
                if "PixelSpacing" in item:
                    old = [float(v) for v in item.PixelSpacing]
                    item.PixelSpacing = [f"{v / scale:.10g}" for v in old]
        for group in per_frame or shared:
            spacing = _lookup(group, shared, "PixelMeasuresSequence", "PixelSpacing")
            orientation = _lookup(group, shared, "PlaneOrientationSequence", "ImageOrientationPatient")
            for item in _items(group, "PlanePositionSequence"):
                if spacing is not None and orientation is not None and "ImagePositionPatient" in item:
                    old_spacing = [float(v) * scale for v in spacing]
                    item.ImagePositionPatient = _shift(item.ImagePositionPatient, orientation, old_spacing, scale)
    for keyword in ("ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        if keyword in ds:
            setattr(ds, keyword, [f"{float(v) / scale:.10g}" for v in getattr(ds, keyword)])
    if "PixelSpacing" in ds:
        old_spacing = [float(v) for v in ds.PixelSpacing]
        ds.PixelSpacing = [f"{v / scale:.10g}" for v in old_spacing]
        if "ImagePositionPatient" in ds and "ImageOrientationPatient" in ds:
            ds.ImagePositionPatient = _shift(ds.ImagePositionPatient, ds.ImageOrientationPatient, old_spacing, scale)


def _lookup(group: Dataset, shared: list[Dataset], sequence: str, keyword: str):
    for item in [group, *shared]:
        seq = item.get(sequence)
        if seq and keyword in seq[0]:
            return list(seq[0][keyword].value)
    return None


def _shift(position, orientation, spacing: list[float], scale: int) -> list[str]:
    """New first-pixel centre: old one + (1/(2 scale) - 1/2) x (column step along the row + row step down)."""
    row_dir, col_dir = np.array(orientation[:3], float), np.array(orientation[3:], float)
    delta = (0.5 / scale - 0.5) * (spacing[1] * row_dir + spacing[0] * col_dir)
    return [f"{v:.10g}" for v in np.array(position, float) + delta]


def deidentify(ds: Dataset, uid_map: dict[str, str]) -> None:
    """Apply the PS3.15 basic profile in place; `uid_map` keeps replaced UIDs consistent across files."""

    def visit(item: Dataset) -> None:
        for tag in [t for t in item.keys() if t.is_private]:  # noqa: SIM118 (a Dataset iterates over its elements, keys() over tags)
            del item[tag]
        for keyword in _REMOVE:
            if keyword in item:
                delattr(item, keyword)
        for keyword in _EMPTY:
            if keyword in item:
                item[keyword].value = ""
        for keyword in _UIDS:
            if keyword in item and item[keyword].value:
                old = str(item[keyword].value)
                item[keyword].value = uid_map.setdefault(old, generate_uid())
        for element in item:
            if element.VR == "SQ":
                for child in element.value:
                    visit(child)

    visit(ds)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword in (*_EMPTY[:4], "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "SciSR: PS3.15 basic confidentiality profile"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = (
        "113100",
        "DCM",
        "Basic Application Confidentiality Profile",
    )
    ds.DeidentificationMethodCodeSequence = DicomSequence([code])
