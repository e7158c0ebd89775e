"""The other objects a PACS forwards within a CT study, as small datasets with file meta.

A scout (CT Image Storage, ImageType LOCALIZER), a Secondary Capture dose screen, an
X-Ray Radiation Dose SR, a Key Object Selection note, a Comprehensive 3D SR and a
Segmentation: each carries the study's patient and UIDs, enough for a PACS to hold it.
"""

from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.uid import (
    Comprehensive3DSRStorage,
    KeyObjectSelectionDocumentStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
    XRayRadiationDoseSRStorage,
    generate_uid,
)

from services.receiver.tests.helpers import ct_slice
from tests.fixtures.datasets import dicom_object, set_grey_pixels

# (name, SOP class, Modality) of each non-CT object of the study.
OTHER_OBJECTS = (
    ("dose-screen", SecondaryCaptureImageStorage, "OT"),
    ("dose-report", XRayRadiationDoseSRStorage, "SR"),
    ("key-objects", KeyObjectSelectionDocumentStorage, "KO"),
    ("report", Comprehensive3DSRStorage, "SR"),
    ("segmentation", SegmentationStorage, "SEG"),
)


def _object(study_uid: str, sop_class: str, modality: str, number: int) -> Dataset:
    """A minimal object of ``sop_class`` in the study (a new series of its own)."""
    ds = dicom_object(sop_class, study_uid=study_uid, series_uid=generate_uid(), modality=modality)
    ds.StudyDate = "20260101"
    ds.SeriesNumber = number
    ds.InstanceNumber = 1
    if sop_class in (SecondaryCaptureImageStorage, SegmentationStorage):
        set_grey_pixels(ds, np.zeros((16, 16), np.uint8))
    return ds


def write_study(folder: Path, *, ct_slices: int = 6) -> tuple[str, str, list[Path]]:
    """A study: a CT series, a scout and one object of each other kind, written to
    ``folder``. Returns (study UID, CT series UID, every path)."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    paths: list[Path] = []
    for k in range(ct_slices):
        path = folder / f"ct{k:03d}.dcm"
        ct_slice(study_uid, series_uid, k).save_as(path, enforce_file_format=True)
        paths.append(path)
    scout = ct_slice(study_uid, generate_uid(), 0)
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.SeriesNumber = 1
    scout.save_as(folder / "scout.dcm", enforce_file_format=True)
    paths.append(folder / "scout.dcm")
    for number, (name, sop_class, modality) in enumerate(OTHER_OBJECTS, start=100):
        path = folder / f"{name}.dcm"
        _object(study_uid, sop_class, modality, number).save_as(path, enforce_file_format=True)
        paths.append(path)
    return study_uid, series_uid, paths


def large_page(path: Path) -> Path:
    """A Secondary Capture page of 1024 x 768 RGB, as big as PulmoGate's summary."""
    ds = _object(generate_uid(), SecondaryCaptureImageStorage, "OT", 9002)
    ds.Rows, ds.Columns = 768, 1024
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = np.full((768, 1024, 3), 200, np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path
