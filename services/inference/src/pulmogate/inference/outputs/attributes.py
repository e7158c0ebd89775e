"""Patient/study attributes, deterministic UIDs and common headers shared by every output object."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from pulmogate.common.uids import derive_uid

if TYPE_CHECKING:
    from pulmogate.inference.analysis import Analysis
    from pulmogate.inference.volume import Volume

MANUFACTURER = "PulmoGate"
LOCAL_SCHEME = "99PULMOGATE"  # local codes where no standard concept was verified
SECONDARY_CAPTURE_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.7")
PATIENT_STUDY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
)
TYPE2_KEYWORDS = {
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
}


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


def software_versions(analysis: Analysis) -> list[str]:
    """SoftwareVersions values: the gateway and the model that produced the result."""
    try:
        from importlib.metadata import version

        gateway = version("pulmogate-inference")
    except Exception:
        gateway = "0"
    return [f"PulmoGate {gateway}", f"{analysis.model_name} {analysis.model_version}"]


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
    """Copy the patient and study attributes of ``source`` onto ``target`` (type 2 kept empty)."""
    for keyword in PATIENT_STUDY_KEYWORDS:
        if keyword in source:
            setattr(target, keyword, source[keyword].value)
        elif keyword in TYPE2_KEYWORDS:
            setattr(target, keyword, "")


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
    source = volume.headers[0]
    sop_uid = output_uid(volume, analysis, kind, index)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    copy_patient_study(source, ds)
    ds.SeriesInstanceUID = output_uid(volume, analysis, kind, "series")
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.Modality = "OT"
    ds.Laterality = ""  # both lungs: no single side
    if "BodyPartExamined" in source:
        ds.BodyPartExamined = source.BodyPartExamined
    ds.ConversionType = "WSD"
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = software_versions(analysis)
    if institution:
        ds.InstitutionName = institution[:64]
    ds.InstanceNumber = index + 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.SeriesDate = ds.ContentDate
    ds.SeriesTime = ds.ContentTime
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "YES"
    ds.PatientOrientation = patient_orientation(volume.orientation)
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
