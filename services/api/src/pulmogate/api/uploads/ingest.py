"""Store uploaded CT instances like received ones and announce each series for routing.

All or nothing: every file is checked before any is filed; one bad file refuses the upload
with its name and the reason. A series already held by PulmoGate is refused (409).

The other objects of an exported study (scouts, dose reports, secondary captures, SRs) are
treated as the receiver treats them when a PACS forwards the study: under
``non_ct_objects = discard`` (default) they are skipped, not stored, and listed in the
answer with the reason; under ``reject`` the upload is refused naming the first.
"""

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.api.errors import ApiError, Conflict
from pulmogate.api.operations_schemas import SkippedFile, UploadedSeries, UploadResult
from pulmogate.api.uploads.unpack import Budget, StagedFile, UnsafeUpload, stage
from pulmogate.common.db.models import Instance, Job, Series, SeriesStatus, utcnow
from pulmogate.common.db.operations import Upload
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.intake.announce import announce_arrival
from pulmogate.common.dicom.intake.header import CannotUnderstand, read_header, stored_classes
from pulmogate.common.dicom.intake.kinds import not_for_analysis
from pulmogate.common.dicom.intake.rows import InstanceRows, Peer, StoredInstance
from pulmogate.common.dicom.intake.values import InstanceValues, fields_with_nul, instance_values
from pulmogate.common.disk import DISK_FULL_ERRNOS
from pulmogate.common.storage import Storage, move_durably

log = structlog.get_logger("pulmogate.api")

UPLOAD_AE = "UPLOAD"
MIN_IMAGE_BYTES = 1024  # the header is read without pixel data: a smaller file has none


class UploadRefused(ApiError):
    """A file of the upload is unsafe or not a CT instance (422 naming the file)."""

    status_code = 422


class StorageFull(ApiError):
    """The storage volume is above its watermark (507)."""

    status_code = 507


class StorageFault(ApiError):
    """The checked files could not be moved into storage (500, nothing kept)."""

    status_code = 500


@dataclass(frozen=True)
class CheckedFile:
    """A staged file that is a CT instance, with its indexed values (``values.path`` is the
    staged file until ``file_into_storage`` files it)."""

    staged: StagedFile
    values: InstanceValues


class NotForAnalysis(Exception):
    """A DICOM object of the study that is not a CT series to analyse (the reason)."""


def check_file(staged: StagedFile, *, skip_others: bool = True) -> CheckedFile:
    """Read the header as the receiver does; refuse anything that is not a CT instance with
    valid UIDs, has no pixel data or holds a NUL in a value PulmoGate indexes. A DICOM object
    that is not a CT image to analyse raises ``NotForAnalysis`` (``skip_others``) or is
    refused."""
    try:
        ds = read_header(staged.path)
        other = not_for_analysis(ds)
        if other is not None and skip_others:
            raise NotForAnalysis(other)
        if other is not None:
            raise CannotUnderstand(other)
        sop_class, syntax = stored_classes(ds)
    except CannotUnderstand as exc:
        raise UnsafeUpload(staged.name, str(exc)) from exc
    if staged.size < MIN_IMAGE_BYTES:
        raise UnsafeUpload(staged.name, "no pixel data")
    with_nul = fields_with_nul(ds)
    if with_nul:
        raise UnsafeUpload(staged.name, f"NUL character in {with_nul[0]}")
    values = instance_values(
        ds,
        sop_class_uid=sop_class,
        transfer_syntax_uid=syntax,
        path=staged.path,
        size_bytes=staged.size,
    )
    return CheckedFile(staged, values)


@dataclass(frozen=True)
class Checked:
    """The CT instances of an upload, and the other objects it skipped."""

    files: list[CheckedFile]
    skipped: list[SkippedFile]


def stage_and_check(
    files: Iterable[tuple[str, IO[bytes]]], staging: Path, *, skip_others: bool = True
) -> Checked:
    """Unpack and check every uploaded file (blocking: run it in a thread)."""
    budget = Budget()
    checked: dict[str, CheckedFile] = {}
    skipped: list[SkippedFile] = []
    for name, src in files:
        for staged in stage(name, src, staging, budget):
            try:
                item = check_file(staged, skip_others=skip_others)
            except NotForAnalysis as other:
                skipped.append(SkippedFile(file=staged.name, reason=str(other)))
                continue
            checked.setdefault(item.values.sop_instance_uid, item)
    if not checked and skipped:
        raise UnsafeUpload(
            "(upload)",
            f"no CT image to analyse in the upload: {len(skipped)} other object(s) skipped, "
            f"e.g. {skipped[0].file}: {skipped[0].reason}",
        )
    if not checked:
        raise UnsafeUpload("(upload)", "no DICOM files in the upload")
    return Checked(list(checked.values()), skipped)


def file_into_storage(items: list[CheckedFile], storage: Storage) -> list[InstanceValues]:
    """Move the (fsynced) staged files to their instance paths, durably; their values there.
    When a move fails, the files already moved are removed (nothing of the upload stays)."""
    filed = [
        replace(
            item.values,
            path=str(
                storage.instance_path(
                    item.values.study_uid, item.values.series_uid, item.values.sop_instance_uid
                )
            ),
        )
        for item in items
    ]
    try:
        move_durably(
            [(item.staged.path, Path(v.path)) for item, v in zip(items, filed, strict=True)]
        )
    except BaseException as exc:
        unfile(filed)  # those moved before the failure: the upload records nothing
        if not isinstance(exc, OSError):
            raise
        fault = StorageFull if exc.errno in DISK_FULL_ERRNOS else StorageFault
        reason = exc.strerror or type(exc).__name__
        raise fault(
            f"the upload could not be filed into storage ({reason}): nothing was kept"
        ) from exc
    return filed


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
    by_uid = {item.values.sop_instance_uid: item for item in items}
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
    filed: list[InstanceValues],
    *,
    rule_id: int | None,
    user: str,
    peer_ip: str,
    called_ae: str,
    skipped: list[SkippedFile] | None = None,
    audit: Callable[[AsyncSession, UploadResult], None] | None = None,
) -> UploadResult:
    """Create the series and instance rows as COMPLETE and stage one SeriesArrived each;
    ``skipped``: the upload's other objects, for the answer."""
    try:
        return await _record_upload(
            db,
            filed,
            rule_id=rule_id,
            user=user,
            peer=Peer(calling_ae=UPLOAD_AE, called_ae=called_ae, peer_ip=peer_ip),
            skipped=skipped or [],
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
    filed: list[InstanceValues],
    *,
    rule_id: int | None,
    user: str,
    peer: Peer,
    skipped: list[SkippedFile],
    audit: Callable[[AsyncSession, UploadResult], None] | None,
) -> UploadResult:
    by_series: dict[str, list[InstanceValues]] = {}
    for item in filed:
        by_series.setdefault(item.series_uid, []).append(item)
    now = utcnow()
    out: list[UploadedSeries] = []
    async with db.session() as session:
        # The series are new (checked before): the unique constraints refuse a race.
        rows = InstanceRows(session)
        for series_uid, members in by_series.items():
            for item in members:
                stored = StoredInstance(item, peer, new_for_association=False, received_at=now)
                await rows.add(stored)
            series = rows.by_uid[series_uid]
            series.status = SeriesStatus.COMPLETE
            series.completed_at = now
            session.add(
                Upload(
                    series_id=series.id,
                    rule_id=rule_id,
                    uploaded_by=user[:100],
                    file_count=len(members),
                )
            )
            announce_arrival(session, series)
            out.append(
                UploadedSeries(
                    series_id=series.id,
                    series_uid=series_uid,
                    instance_count=series.instance_count,
                    rule_id=rule_id,
                )
            )
        await rows.write()
        result = UploadResult(files=len(filed), series=out, skipped=skipped)
        if audit is not None:
            audit(session, result)
    log.info(
        "upload stored",
        series=len(out),
        files=len(filed),
        skipped=len(skipped),
        rule_id=rule_id,
    )
    return result


def unfile(filed: list[InstanceValues]) -> None:
    """Remove the files of an upload whose rows were not recorded."""
    for item in filed:
        with contextlib.suppress(OSError):
            Path(item.path).unlink()


def discard(staging: Path) -> None:
    """Remove an upload's staging folder (what was filed has moved out of it)."""
    shutil.rmtree(staging, ignore_errors=True)
