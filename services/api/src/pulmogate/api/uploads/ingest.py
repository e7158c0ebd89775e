"""Store uploaded CT instances like received ones and announce each series for routing.

All or nothing: every file is checked before any is filed; one bad file refuses the upload
with its name and the reason. A series already held by PulmoGate is refused (409).
"""

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import structlog
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.errors import ApiError, Conflict
from pulmogate.api.operations_schemas import UploadedSeries, UploadResult
from pulmogate.api.uploads.unpack import Budget, StagedFile, UnsafeUpload, stage
from pulmogate.common.db.models import Instance, Job, Series, SeriesStatus, utcnow
from pulmogate.common.db.operations import Upload
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.syntaxes import ACCEPTED_STORAGE_CLASSES
from pulmogate.common.events import SeriesArrived
from pulmogate.common.outbox import enqueue
from pulmogate.common.storage import Storage
from pulmogate.common.uids import is_valid_uid

log = structlog.get_logger("pulmogate.api")

UPLOAD_AE = "UPLOAD"
REQUIRED_UIDS = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")


class UploadRefused(ApiError):
    """A file of the upload is unsafe or not a CT instance (422 naming the file)."""

    status_code = 422


class StorageFull(ApiError):
    """The storage volume is above its watermark (507)."""

    status_code = 507


@dataclass
class CheckedFile:
    """A staged file that is a CT instance, with what its rows need."""

    staged: StagedFile
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    fields: dict[str, Any] = field(default_factory=dict)


def _text(ds: object, keyword: str) -> str:
    value = getattr(ds, keyword, "")
    return "" if value is None else str(value).strip()


def _number(ds: object, keyword: str, kind: type) -> object:
    try:
        value = getattr(ds, keyword, None)
        return None if value in (None, "") else kind(value)
    except (TypeError, ValueError):
        return None


def check_file(staged: StagedFile) -> CheckedFile:
    """Read the header; refuse anything that is not a CT instance with valid UIDs."""
    try:
        ds = dcmread(staged.path, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, OSError) as exc:
        raise UnsafeUpload(staged.name, f"not a DICOM file ({type(exc).__name__})") from exc
    except Exception as exc:
        raise UnsafeUpload(staged.name, f"unreadable DICOM file ({type(exc).__name__})") from exc
    meta = getattr(ds, "file_meta", None)
    sop_class = _text(meta, "MediaStorageSOPClassUID") or _text(ds, "SOPClassUID")
    syntax = _text(meta, "TransferSyntaxUID")
    if sop_class not in ACCEPTED_STORAGE_CLASSES:
        raise UnsafeUpload(staged.name, f"SOP class {sop_class or '(none)'} is not a CT image")
    if not syntax:
        raise UnsafeUpload(staged.name, "no transfer syntax in the file meta (not Part 10)")
    for keyword in REQUIRED_UIDS:
        uid = _text(ds, keyword)
        if not uid or not is_valid_uid(uid):
            raise UnsafeUpload(staged.name, f"missing or invalid {keyword}")
    if "PixelData" not in ds and staged.size < 1024:
        raise UnsafeUpload(staged.name, "no pixel data")
    checked = CheckedFile(
        staged=staged,
        study_uid=_text(ds, "StudyInstanceUID"),
        series_uid=_text(ds, "SeriesInstanceUID"),
        sop_uid=_text(ds, "SOPInstanceUID"),
        sop_class_uid=sop_class,
        transfer_syntax_uid=syntax,
        fields={
            "modality": _text(ds, "Modality")[:16],
            "study_description": _text(ds, "StudyDescription")[:200],
            "series_description": _text(ds, "SeriesDescription")[:200],
            "patient_name": _text(ds, "PatientName")[:200],
            "patient_id": _text(ds, "PatientID")[:64],
            "study_date": _text(ds, "StudyDate")[:8],
            "accession_number": _text(ds, "AccessionNumber")[:64],
            "instance_number": _number(ds, "InstanceNumber", int),
            "rows": _number(ds, "Rows", int),
            "columns": _number(ds, "Columns", int),
            "pixel_spacing": "\\".join(str(v) for v in getattr(ds, "PixelSpacing", []) or [])[:64],
            "slice_thickness": _number(ds, "SliceThickness", float),
        },
    )
    for name, value in checked.fields.items():
        if isinstance(value, str) and "\x00" in value:
            raise UnsafeUpload(staged.name, f"NUL character in {name}")
    return checked


def stage_and_check(files: Iterable[tuple[str, IO[bytes]]], staging: Path) -> list[CheckedFile]:
    """Unpack and check every uploaded file (blocking: run it in a thread)."""
    budget = Budget()
    checked: dict[str, CheckedFile] = {}
    for name, src in files:
        for staged in stage(name, src, staging, budget):
            item = check_file(staged)
            checked.setdefault(item.sop_uid, item)
    if not checked:
        raise UnsafeUpload("(upload)", "no DICOM files in the upload")
    return list(checked.values())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_into_storage(items: list[CheckedFile], storage: Storage) -> dict[str, Path]:
    """Move staged files to their instance paths (fsynced before, directory fsynced after)."""
    placed: dict[str, Path] = {}
    for item in items:
        dest = storage.instance_path(item.study_uid, item.series_uid, item.sop_uid)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(item.staged.path, dest)
        placed[item.sop_uid] = dest
    for folder in {p.parent for p in placed.values()}:
        _fsync_dir(folder)
    return placed


def staging_dir(storage: Storage) -> Path:
    """A fresh folder for one upload on the storage volume (renames stay on one filesystem)."""
    root = storage.staging_folder()
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=root, prefix=f"{uuid.uuid4().hex[:8]}-"))


async def check_series_are_new(db: Database, series_uids: set[str]) -> None:
    """Refuse series PulmoGate already holds (one job per series)."""
    async with db.sessions() as session:
        rows = (
            await session.execute(
                select(Series.series_uid, Job.id)
                .outerjoin(Job, Job.series_id == Series.id)
                .where(Series.series_uid.in_(series_uids))
            )
        ).all()
    if rows:
        uid, job_id = rows[0]
        held = f"job {job_id}" if job_id is not None else "still being received"
        raise Conflict(f"series {uid} is already held by PulmoGate ({held})")


SOP_BATCH = 500


async def check_instances_are_new(db: Database, items: list[CheckedFile]) -> None:
    """Refuse files whose SOP Instance UID PulmoGate already holds (in another series: the
    series of this upload are new, so any match is another series)."""
    by_uid = {item.sop_uid: item for item in items}
    uids = list(by_uid)
    async with db.sessions() as session:
        for start in range(0, len(uids), SOP_BATCH):
            row = (
                await session.execute(
                    select(Instance.sop_instance_uid, Series.series_uid, Job.id)
                    .join(Series, Series.id == Instance.series_id)
                    .outerjoin(Job, Job.series_id == Series.id)
                    .where(Instance.sop_instance_uid.in_(uids[start : start + SOP_BATCH]))
                    .limit(1)
                )
            ).first()
            if row is not None:
                uid, series_uid, job_id = row
                held = f"job {job_id}" if job_id is not None else "still being received"
                raise Conflict(
                    f"{by_uid[uid].staged.name}: SOP Instance UID {uid} is already stored "
                    f"in another series ({series_uid}, {held})"
                )


async def record_upload(
    db: Database,
    items: list[CheckedFile],
    placed: dict[str, Path],
    *,
    rule_id: int | None,
    user: str,
    peer_ip: str,
    called_ae: str,
    audit: Callable[[AsyncSession, UploadResult], None] | None = None,
) -> UploadResult:
    """Create the series and instance rows as COMPLETE and stage one SeriesArrived each."""
    try:
        return await _record_upload(
            db,
            items,
            placed,
            rule_id=rule_id,
            user=user,
            peer_ip=peer_ip,
            called_ae=called_ae,
            audit=audit,
        )
    except IntegrityError as exc:
        # Another upload or a C-STORE recorded one of these series or instances meanwhile.
        raise Conflict(
            "a series or SOP Instance UID of the upload was stored by another sender "
            "while it was checked: nothing was recorded; send it again to see which"
        ) from exc


async def _record_upload(
    db: Database,
    items: list[CheckedFile],
    placed: dict[str, Path],
    *,
    rule_id: int | None,
    user: str,
    peer_ip: str,
    called_ae: str,
    audit: Callable[[AsyncSession, UploadResult], None] | None,
) -> UploadResult:
    by_series: dict[str, list[CheckedFile]] = {}
    for item in items:
        by_series.setdefault(item.series_uid, []).append(item)
    now = utcnow()
    out: list[UploadedSeries] = []
    async with db.session() as session:
        for series_uid, members in by_series.items():
            first = members[0]
            f = first.fields
            series = Series(
                series_uid=series_uid,
                study_uid=first.study_uid,
                patient_name=f["patient_name"],
                patient_id=f["patient_id"],
                study_date=f["study_date"],
                accession_number=f["accession_number"],
                study_description=f["study_description"],
                series_description=f["series_description"],
                modality=f["modality"],
                calling_ae=UPLOAD_AE,
                called_ae=called_ae[:16],
                peer_ip=peer_ip[:45],
                status=SeriesStatus.COMPLETE,
                instance_count=len(members),
                open_associations=0,
                first_received_at=now,
                last_received_at=now,
                completed_at=now,
            )
            session.add(series)
            await session.flush()
            for item in members:
                session.add(
                    Instance(
                        series_id=series.id,
                        sop_instance_uid=item.sop_uid,
                        sop_class_uid=item.sop_class_uid,
                        transfer_syntax_uid=item.transfer_syntax_uid,
                        path=str(placed[item.sop_uid]),
                        size_bytes=item.staged.size,
                        instance_number=item.fields["instance_number"],
                        rows=item.fields["rows"],
                        columns=item.fields["columns"],
                        pixel_spacing=item.fields["pixel_spacing"],
                        slice_thickness=item.fields["slice_thickness"],
                        modality=item.fields["modality"],
                        received_at=now,
                    )
                )
            session.add(
                Upload(
                    series_id=series.id,
                    rule_id=rule_id,
                    uploaded_by=user[:100],
                    file_count=len(members),
                )
            )
            enqueue(
                session,
                SeriesArrived(
                    series_id=series.id,
                    study_uid=series.study_uid,
                    series_uid=series_uid,
                    calling_ae=UPLOAD_AE,
                    called_ae=series.called_ae,
                    peer_ip=series.peer_ip,
                    study_description=series.study_description,
                    series_description=series.series_description,
                    modality=series.modality,
                    instance_count=len(members),
                ),
            )
            out.append(
                UploadedSeries(
                    series_id=series.id,
                    series_uid=series_uid,
                    instance_count=len(members),
                    rule_id=rule_id,
                )
            )
        result = UploadResult(files=len(items), series=out)
        if audit is not None:
            audit(session, result)
    log.info("upload stored", series=len(out), files=len(items), rule_id=rule_id)
    return result


def discard(staging: Path) -> None:
    """Remove an upload's staging folder (what was filed has moved out of it)."""
    shutil.rmtree(staging, ignore_errors=True)
