"""Studies for the Q/R tests: received CT series plus result series on disk and in the DB."""

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from pulmogate.common.db.models import Job, JobStatus, OutputObject
from pulmogate.common.dicom.encoding import ImageEncoding, encoded
from pulmogate.common.storage import atomic_write, dataset_bytes
from services.receiver.tests.helpers import RunningReceiver, ct_slice, run_tool

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"


@dataclass
class HeldStudy:
    """A study as PulmoGate holds it: one received CT series and (maybe) result series."""

    patient_name: str
    patient_id: str
    study_date: str
    study_uid: str = field(default_factory=generate_uid)
    ct_series_uid: str = field(default_factory=generate_uid)
    ct_sops: list[str] = field(default_factory=list)
    overlay_series_uid: str = ""
    overlay_sops: list[str] = field(default_factory=list)
    sr_series_uid: str = ""
    sr_sops: list[str] = field(default_factory=list)
    job_id: int | None = None
    charset: str = ""  # SpecificCharacterSet of the CT slices ("": none, ASCII)
    # Overlay slices as 8-bit RGB pictures stored in this encoding (None: 16-bit, as written).
    overlay_encoding: ImageEncoding | None = None
    ct_syntax: str = ""  # the CT slices compressed in this syntax before they are sent

    @property
    def all_sops(self) -> set[str]:
        return {*self.ct_sops, *self.overlay_sops, *self.sr_sops}


def unique_id(prefix: str) -> str:
    """A patient ID no other test in the module shares."""
    return f"{prefix}-{uuid.uuid4().hex[:8].upper()}"


def _study_slice(study: HeldStudy, index: int) -> Dataset:
    ds = ct_slice(study.study_uid, study.ct_series_uid, index, size=16)
    if study.charset:
        ds.SpecificCharacterSet = study.charset
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = study.study_date
    ds.StudyTime = "101500"
    ds.StudyID = "QR1"
    ds.AccessionNumber = f"A{study.patient_id[-8:]}"
    ds.StudyDescription = "CT CHEST QR"
    ds.SeriesDescription = "Axial 1.25"
    ds.SeriesNumber = 3
    return ds


def result_object(study: HeldStudy, series_uid: str, index: int, *, sr: bool) -> Dataset:
    """A small result object in the study (Secondary Capture overlay slice or an SR)."""
    sop_class = UID(COMPREHENSIVE_3D_SR) if sr else SecondaryCaptureImageStorage
    if sr:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.StudyInstanceUID = study.study_uid
        ds.PatientName = study.patient_name
        ds.PatientID = study.patient_id
        ds.ValueType = "CONTAINER"
    else:
        ds = ct_slice(study.study_uid, series_uid, index, size=16, sop_class=sop_class)
        if study.overlay_encoding is not None:  # an 8-bit RGB picture, as the overlay is
            ds.SamplesPerPixel = 3
            ds.PhotometricInterpretation = "RGB"
            ds.PlanarConfiguration = 0
            ds.BitsAllocated = ds.BitsStored = 8
            ds.HighBit = 7
            ds.PixelRepresentation = 0
            rng = np.random.default_rng(index)
            ds.PixelData = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8).tobytes()
    sop_uid = UID(generate_uid())
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "SR" if sr else "OT"
    ds.SeriesNumber = 9001 if sr else 9000
    ds.SeriesDescription = "PulmoGate report (qct 1.0)" if sr else "PulmoGate lesions (qct 1.0)"
    ds.InstanceNumber = index + 1
    if not sr and study.overlay_encoding is not None:
        ds = encoded(ds, study.overlay_encoding)
    return ds


async def hold_study(
    rx: RunningReceiver,
    tmp: Path,
    study: HeldStudy,
    *,
    slices: int = 3,
    overlay: int = 0,
    sr: bool = False,
    purged: bool = False,
) -> HeldStudy:
    """Send the CT series with storescu, then record a job whose results are on disk."""
    folder = tmp / f"send-{study.ct_series_uid}"
    folder.mkdir(parents=True)
    paths = []
    for k in range(slices):
        ds = _study_slice(study, k)
        if study.ct_syntax:
            ds.compress(study.ct_syntax, generate_instance_uid=False)
        study.ct_sops.append(str(ds.SOPInstanceUID))
        path = folder / f"{k}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(str(path))
    propose = {"": [], RLELossless: ["-xr"]}[study.ct_syntax]
    sent = await run_tool(
        "/usr/bin/storescu",
        *propose,
        "-aet",
        "MODALITY1",
        "-aec",
        "PULMOGATE",
        "127.0.0.1",
        str(rx.port),
        *paths,
    )
    assert sent.returncode == 0, sent.stderr
    series = await rx.wait_status(study.ct_series_uid, "complete")
    if not overlay and not sr:
        return study
    async with rx.ctx.db.session() as session:
        job = Job(series_id=series.id, status=JobStatus.DONE)
        if purged:
            job.purged_at = datetime.now(UTC)
        session.add(job)
        await session.flush()
        study.job_id = job.id
        outputs: list[tuple[str, Dataset]] = []
        if overlay:
            study.overlay_series_uid = generate_uid()
            for k in range(overlay):
                outputs.append(
                    ("overlay", result_object(study, study.overlay_series_uid, k, sr=False))
                )
        if sr:
            study.sr_series_uid = generate_uid()
            outputs.append(("sr", result_object(study, study.sr_series_uid, 0, sr=True)))
        for kind, ds in outputs:
            sop_uid = str(ds.SOPInstanceUID)
            (study.sr_sops if kind == "sr" else study.overlay_sops).append(sop_uid)
            path = rx.ctx.storage.result_path(job.id, kind, sop_uid)
            if not purged:
                await asyncio.to_thread(atomic_write, path, dataset_bytes(ds))
            session.add(
                OutputObject(
                    job_id=job.id,
                    kind=kind,
                    sop_instance_uid=sop_uid,
                    sop_class_uid=str(ds.SOPClassUID),
                    series_uid=str(ds.SeriesInstanceUID),
                    path=str(path),
                )
            )
    return study
