"""What PulmoGate indexes of a stored instance: every value its series and instance rows
hold, mapped from a checked header (``header.read_header``) in one place.

The values a series' instances share (study, patient, series, image geometry) are converted
once per run of instances whose raw values are the same bytes: pydicom's conversion of some
twenty elements costs about a millisecond per instance, which a receiver on two cores cannot
afford 300 times per series. One run is remembered per thread, and only until the next.
"""

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydicom import Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.multival import MultiValue

from pulmogate.common.dicom.intake.header import CT_CLASSES, uid_text

N = TypeVar("N", int, float)

# Descriptive text values: the field of ``InstanceValues`` and the attribute it comes from.
TEXT_FIELDS = {
    "modality": "Modality",
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "patient_name": "PatientName",
    "patient_id": "PatientID",
    "study_date": "StudyDate",
    "accession_number": "AccessionNumber",
    "study_time": "StudyTime",
    "study_id": "StudyID",
    "patient_birth_date": "PatientBirthDate",
    "patient_sex": "PatientSex",
}


@dataclass(frozen=True)
class InstanceValues:
    """The indexed values of one stored instance (patient fields go to the DB only)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: str
    size_bytes: int
    modality: str = ""
    study_description: str = ""
    series_description: str = ""
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    accession_number: str = ""
    study_time: str = ""
    study_id: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    series_number: int | None = None
    instance_number: int | None = None
    rows: int | None = None
    columns: int | None = None
    pixel_spacing: str = ""
    slice_thickness: float | None = None


def _raw_text(ds: Dataset, keyword: str) -> str:
    """A value as text ("" when absent or undecodable); multiple values as stored, separated
    by a backslash."""
    try:
        value = ds.get(keyword, "")
    except Exception:  # a value pydicom cannot convert: nothing to index
        return ""
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        value = "\\".join(str(v) for v in value)
    return str(value).strip()


def _text(ds: Dataset, keyword: str) -> str:
    """A descriptive value for the database, NUL removed (PostgreSQL text refuses it; the
    stored file keeps the value as it came)."""
    return _raw_text(ds, keyword).replace("\x00", "").strip()


def _number(ds: Dataset, keyword: str, kind: type[N]) -> N | None:
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else kind(value)
    except Exception:  # absent from the index, not a reason to refuse the instance
        return None


def _pixel_spacing(ds: Dataset) -> str:
    try:
        return "\\".join(str(v) for v in ds.get("PixelSpacing", []) or [])
    except Exception:  # the loader refuses the series with the reason; here: unknown
        return ""


def _modality(ds: Dataset, sop_class_uid: str) -> str:
    """Modality, or CT for a CT storage class when the header lacks it (type 1, but some
    exports drop it; the loader derives it the same way)."""
    modality = _text(ds, "Modality")
    if not modality and sop_class_uid in CT_CLASSES:
        return "CT"
    return modality


# The attributes read for the shared values (text fields, series number, image geometry),
# and the character set their text is decoded with.
SHARED_KEYWORDS = (
    *TEXT_FIELDS.values(),
    "SpecificCharacterSet",
    "SeriesNumber",
    "Rows",
    "Columns",
    "PixelSpacing",
    "SliceThickness",
)
_SHARED_TAGS = tuple(int(tag_for_keyword(k) or 0) for k in SHARED_KEYWORDS)
_last_run = threading.local()


def _shared_values(ds: Dataset, sop_class_uid: str) -> dict[str, Any]:
    texts: dict[str, Any] = {name: _text(ds, keyword) for name, keyword in TEXT_FIELDS.items()}
    texts["modality"] = _modality(ds, sop_class_uid)
    return texts | {
        "series_number": _number(ds, "SeriesNumber", int),
        "rows": _number(ds, "Rows", int),
        "columns": _number(ds, "Columns", int),
        "pixel_spacing": _pixel_spacing(ds),
        "slice_thickness": _number(ds, "SliceThickness", float),
    }


def _raw_key(ds: Dataset, sop_class_uid: str) -> tuple[object, ...]:
    """Everything the shared values are converted from: each element's encoded bytes (or
    its value, where pydicom converted it while reading, as it does the character set)."""
    parts: list[object] = [sop_class_uid, ds.original_encoding]
    for tag in _SHARED_TAGS:
        elem = ds.get_item(tag)
        if elem is None:
            parts.append(None)
        elif isinstance(elem, RawDataElement):
            parts.append(("raw", elem.VR, elem.value))
        else:
            parts.append(("value", elem.VR, str(elem.value)))
    return tuple(parts)


def _shared(ds: Dataset, sop_class_uid: str) -> dict[str, Any]:
    """The shared values, converted again only when what they come from differs from the
    previous instance's in this thread."""
    key = _raw_key(ds, sop_class_uid)
    last = getattr(_last_run, "values", None)
    if last is None or last[0] != key:
        last = (key, _shared_values(ds, sop_class_uid))
        _last_run.values = last
    return last[1]


def fields_with_nul(ds: Dataset) -> list[str]:
    """The descriptive fields whose value holds a NUL character (``instance_values`` drops it)."""
    return [name for name, keyword in TEXT_FIELDS.items() if "\x00" in _raw_text(ds, keyword)]


def instance_values(
    ds: Dataset, *, sop_class_uid: str, transfer_syntax_uid: str, path: Path, size_bytes: int
) -> InstanceValues:
    """The indexed values of a checked header stored at ``path``."""
    return InstanceValues(
        study_uid=uid_text(ds, "StudyInstanceUID"),
        series_uid=uid_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=uid_text(ds, "SOPInstanceUID"),
        sop_class_uid=sop_class_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        path=str(path),
        size_bytes=size_bytes,
        instance_number=_number(ds, "InstanceNumber", int),
        **_shared(ds, sop_class_uid),
    )
