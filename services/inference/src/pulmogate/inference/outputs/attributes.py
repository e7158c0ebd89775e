"""Patient/study attributes, deterministic UIDs and common headers shared by every output object."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from pulmogate.common.uids import derive_uid
from pulmogate.inference import header as attr
from pulmogate.inference.outputs.values import problem

if TYPE_CHECKING:
    from pulmogate.inference.analysis import Analysis
    from pulmogate.inference.volume import Volume

MANUFACTURER = "PulmoGate"
LOCAL_SCHEME = "99PULMOGATE"  # local codes where no standard concept was found
SECONDARY_CAPTURE_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
# The one character-set rule of every output: values are written in UTF-8, whatever the
# input's Specific Character Set was (pydicom decoded them from it).
CHARACTER_SET = "ISO_IR 192"
# What every result depicts: the lungs, in the chest. CHEST is not a paired part, so no
# result carries Laterality (type 2C: required, and then with a value, for paired parts).
BODY_PART = "CHEST"
# The patient and study attributes every output copies from the input: (keyword, VR, type,
# enumerated values). Type 2 ones are written empty when the input lacks them or holds a
# value that breaks its VR; type 3 ones are left out then.
COPIED_ATTRIBUTES: tuple[tuple[str, str, int, tuple[str, ...]], ...] = (
    ("PatientName", "PN", 2, ()),
    ("PatientID", "LO", 2, ()),
    ("PatientBirthDate", "DA", 2, ()),
    ("PatientSex", "CS", 2, ("M", "F", "O")),
    ("StudyDate", "DA", 2, ()),
    ("StudyTime", "TM", 2, ()),
    ("StudyID", "SH", 2, ()),
    ("AccessionNumber", "SH", 2, ()),
    ("ReferringPhysicianName", "PN", 2, ()),
    ("StudyDescription", "LO", 3, ()),
    ("IssuerOfPatientID", "LO", 3, ()),
    ("PatientAge", "AS", 3, ()),
)
PATIENT_STUDY_KEYWORDS = (
    "StudyInstanceUID",
    *(keyword for keyword, _, _, _ in COPIED_ATTRIBUTES),
)
TYPE2_KEYWORDS = {keyword for keyword, _, kind, _ in COPIED_ATTRIBUTES if kind == 2}
# What highdicom reads from the first source image besides the patient and study.
SOURCE_KEYWORDS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "Modality",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "Rows",
    "Columns",
    "LossyImageCompression",
    "LossyImageCompressionRatio",
    "LossyImageCompressionMethod",
)


@dataclass(frozen=True)
class PatientStudy:
    """The patient and study values the outputs carry, each checked, and what the job log
    should say about the ones that could not be copied (attribute names, never values)."""

    values: dict[str, str]
    notes: list[str]


def _copied_value(source: pydicom.Dataset, keyword: str, vr: str, allowed: tuple[str, ...]) -> str:
    """The value to copy ("" when absent or empty); ``BadValue`` when it breaks its VR."""
    found = attr.values(source, keyword)
    if not found:
        return ""
    if len(found) > 1:
        raise attr.BadValue(keyword, f"has {len(found)} values where one is allowed")
    if isinstance(found[0], bytes):
        raise attr.BadValue(keyword, "is stored as bytes, not text")
    text = str(found[0]).strip(" ").rstrip("\x00 ")
    wrong = problem(vr, text, allowed)
    if wrong is not None:
        raise attr.BadValue(keyword, wrong)
    return text


def patient_study(source: pydicom.Dataset) -> PatientStudy:
    """The checked patient and study values of ``source`` (the first slice of the input).

    A value that is missing is written empty (type 2) or left out (type 3), as the standard
    allows for an anonymised header; a value that breaks its VR (a date that is no date, a
    second name where one is allowed, a NUL) is treated the same way, with a note."""
    values: dict[str, str] = {}
    notes: list[str] = []
    missing: list[str] = []
    for keyword, vr, kind, allowed in COPIED_ATTRIBUTES:
        if keyword not in source and kind == 2:
            missing.append(keyword)
        try:
            value = _copied_value(source, keyword, vr, allowed)
        except attr.BadValue as error:
            outcome = "written empty in" if kind == 2 else "left out of"
            notes.append(f"{keyword} of the input {error.problem}: {outcome} the outputs")
            value = ""
        if value or kind == 2:  # type 3: present only with a value
            values[keyword] = value
    if missing:
        notes.insert(
            0,
            f"{', '.join(missing)} missing in the input (an anonymised header?): "
            "written empty in the outputs",
        )
    return PatientStudy(values=values, notes=notes)


def instance_set(volume: Volume) -> str:
    """A digest of the SOP Instance UIDs the volume was built from (order-free)."""
    uids = sorted(str(h.get("SOPInstanceUID", "")) for h in volume.headers)
    return hashlib.sha256("\n".join(uids).encode()).hexdigest()[:32]


def output_uid(volume: Volume, analysis: Analysis, kind: str, index: str | int) -> str:
    """UID derived from (input series, the instances analysed, model version, kind, index):
    the same input gives the same UID; a series analysed again with more instances (or
    another model version) gives new ones."""
    return derive_uid(
        "pulmogate-output",
        volume.series_uid,
        instance_set(volume),
        analysis.model_version,
        kind,
        index,
    )


def gateway_version() -> str:
    """The SoftwareVersions value of the gateway itself, e.g. 'PulmoGate 0.1.0'."""
    try:
        from importlib.metadata import version

        gateway = version("pulmogate-inference")
    except Exception:
        gateway = "0"
    return f"PulmoGate {gateway}"


def software_versions(analysis: Analysis) -> list[str]:
    """SoftwareVersions values: the gateway and the model that produced the result."""
    return [gateway_version(), f"{analysis.model_name} {analysis.model_version}"]


def set_software_versions(ds: pydicom.Dataset, analysis: Analysis) -> None:
    """Set (or replace) SoftwareVersions with the gateway's and the model's versions."""
    ds.add_new("SoftwareVersions", "LO", software_versions(analysis))


def declare_local_codes(ds: pydicom.Dataset) -> None:
    """Declare the local coding scheme in CodingSchemeIdentificationSequence (SOP Common)."""
    scheme = pydicom.Dataset()
    scheme.CodingSchemeDesignator = LOCAL_SCHEME
    scheme.CodingSchemeName = "PulmoGate local codes"
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    ds.CodingSchemeIdentificationSequence = [scheme]


def series_description(label: str, analysis: Analysis) -> str:
    """A SeriesDescription like 'PulmoGate lesions (qct 1.0)', cut to the LO limit of 64."""
    return f"PulmoGate {label} ({analysis.model_name} {analysis.model_version})"[:64]


def copy_patient_study(source: pydicom.Dataset, target: pydicom.Dataset) -> None:
    """Set the checked patient and study attributes of ``source`` on ``target``."""
    target.StudyInstanceUID = str(source.StudyInstanceUID)
    for keyword, value in patient_study(source).values.items():
        setattr(target, keyword, value)


def clean_source(source: pydicom.Dataset) -> pydicom.Dataset:
    """``source`` as highdicom should see it: what it reads for references and geometry,
    and the checked patient and study values (highdicom copies every patient and study
    attribute of the first source image it is given, and converts them as it does)."""
    clean = attr.copy_elements(source, SOURCE_KEYWORDS)
    clean.SpecificCharacterSet = CHARACTER_SET
    copy_patient_study(source, clean)
    return clean


def patient_orientation(orientation: tuple[float, ...]) -> list[str]:
    """PatientOrientation (row, column directions) from ImageOrientationPatient."""
    letters = (("L", "R"), ("P", "A"), ("H", "F"))

    def label(cosines: tuple[float, ...]) -> str:
        axis = max(range(3), key=lambda i: abs(cosines[i]))
        return letters[axis][0] if cosines[axis] > 0 else letters[axis][1]

    return [label(tuple(orientation[:3])), label(tuple(orientation[3:6]))]


def secondary_capture(
    volume: Volume,
    analysis: Analysis,
    *,
    kind: str,
    index: int,
    series_number: int,
    description: str,
    institution: str | None,
    now: datetime,
) -> pydicom.Dataset:
    """A Secondary Capture dataset in the input study with everything but the pixels set."""
    return secondary_capture_of(
        volume.headers[0],
        sop_uid=output_uid(volume, analysis, kind, index),
        series_uid=output_uid(volume, analysis, kind, "series"),
        series_number=series_number,
        instance_number=index + 1,
        description=description,
        software=software_versions(analysis),
        institution=institution,
        now=now,
        orientation=patient_orientation(volume.orientation),
    )


def secondary_capture_of(
    source: pydicom.Dataset,
    *,
    sop_uid: str,
    series_uid: str,
    series_number: int,
    instance_number: int,
    description: str,
    software: list[str],
    institution: str | None,
    now: datetime,
    orientation: list[str] | None,
) -> pydicom.Dataset:
    """A Secondary Capture dataset in the study of ``source`` (its patient and study copied
    as every result copies them) with everything but the pixels set; ``orientation`` None
    for a page that is not a view of the patient (PatientOrientation then empty)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = CHARACTER_SET
    ds.SOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    copy_patient_study(source, ds)
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.Modality = "OT"
    ds.BodyPartExamined = BODY_PART
    ds.ConversionType = "WSD"
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = software
    if institution:
        ds.InstitutionName = institution[:64]
    ds.InstanceNumber = instance_number
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.SeriesDate = ds.ContentDate
    ds.SeriesTime = ds.ContentTime
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "YES"
    ds.PatientOrientation = orientation if orientation is not None else ""
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    return ds


def set_rgb_pixels(ds: pydicom.Dataset, rgb: np.ndarray) -> None:
    """Store an (rows, columns, 3) uint8 array as the dataset's native RGB PixelData."""
    ds.Rows, ds.Columns = int(rgb.shape[0]), int(rgb.shape[1])
    ds.PixelData = rgb.tobytes()
