"""Per-frame DICOM facts that frame selection and slab splitting use: image type and slice position.

- Image type: an enhanced multi-frame object's frame type (FrameType of any `*FrameTypeSequence`
  in the frame's per-frame functional group, then the shared group), else the top-level ImageType.
- Complex component: ComplexImageComponent of that frame type item or the top level; classic
  images rarely carry it, so vendor codes among ImageType's values 3 onward (M, P, R, I, as
  Siemens and Philips write them, or MAGNITUDE / PHASE / REAL / IMAGINARY) stand in.
- Slice position: ImagePositionPatient (per-frame PlanePositionSequence for enhanced objects)
  projected on the slice normal, the cross product of ImageOrientationPatient's row and column
  directions, in mm. None when either is missing or not numeric: without geometry frames may be
  time points of one slice, which must never be cut apart as if they were a volume.
"""

from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset

_CODES = {
    "M": "MAGNITUDE",
    "MAGNITUDE": "MAGNITUDE",
    "P": "PHASE",
    "PHASE": "PHASE",
    "R": "REAL",
    "REAL": "REAL",
    "I": "IMAGINARY",
    "IMAGINARY": "IMAGINARY",
}


def frame_groups(ds: Dataset, index: int) -> list[Dataset]:
    """The frame's per-frame functional group item, then the shared one (each when present)."""
    out = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and index < len(per_frame):
        out.append(per_frame[index])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        out.append(shared[0])
    return out


def _values(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(str(v).strip().upper() for v in items)


def frame_type(ds: Dataset, index: int) -> tuple[tuple[str, ...], str]:
    """(image type values, complex component) of frame `index` (see module docstring)."""
    for group in frame_groups(ds, index):
        for element in group:
            if element.keyword.endswith("FrameTypeSequence") and element.VR == "SQ" and element.value:
                item = element.value[0]
                if "FrameType" in item:
                    types = _values(item.get("FrameType"))
                    component = str(item.get("ComplexImageComponent", "") or ds.get("ComplexImageComponent", "") or "")
                    return types, component.strip().upper() or _component_from(types)
    types = _values(ds.get("ImageType"))
    component = str(ds.get("ComplexImageComponent", "") or "").strip().upper()
    return types, component or _component_from(types)


def _component_from(types: tuple[str, ...]) -> str:
    """The complex component a vendor code among ImageType values 3 onward names ('' if none)."""
    for value in types[2:]:
        if value in _CODES:
            return _CODES[value]
    return ""


def _floats(item: Dataset | None, keyword: str, n: int) -> np.ndarray | None:
    if item is None or keyword not in item:
        return None
    try:
        values = np.array([float(v) for v in item[keyword].value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return values if values.shape == (n,) and np.isfinite(values).all() else None


def slice_position(ds: Dataset, index: int) -> float | None:
    """Position of frame `index` along its slice normal in mm, or None without that geometry."""
    position = orientation = None
    for group in frame_groups(ds, index):
        seq = group.get("PlanePositionSequence")
        if position is None and seq:
            position = _floats(seq[0], "ImagePositionPatient", 3)
        seq = group.get("PlaneOrientationSequence")
        if orientation is None and seq:
            orientation = _floats(seq[0], "ImageOrientationPatient", 6)
    if position is None:
        position = _floats(ds, "ImagePositionPatient", 3)
    if orientation is None:
        orientation = _floats(ds, "ImageOrientationPatient", 6)
    if position is None or orientation is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        return None
    return round(float(position @ normal) / length, 4)
