"""At start: rows for the instances acknowledged before a crash whose rows were not committed.

Only the series folders marked by ``markers`` are looked at (what an earlier process was
writing when it ended). Each file there without an instance row is a durable, acknowledged
instance: its rows are rebuilt from the file (the header, and the association's peer the
receiver put in its file meta), its series is reopened and marked interrupted like one cut off
mid-association (completion waits ``series_idle_seconds`` for a resend). Temporary files of
writes that never completed (never acknowledged) are removed. Files another writer put there
(no receiver peer in their meta) are left alone.
"""

import asyncio
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog
from pydicom import Dataset
from sqlalchemy import select, update

from pulmogate.common.db.models import Instance, Series, SeriesStatus, utcnow
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.intake.header import CannotUnderstand, read_header
from pulmogate.common.dicom.intake.rows import StoredInstance
from pulmogate.common.dicom.intake.values import instance_values
from pulmogate.common.storage import TEMP_PREFIX, Storage, UnsafeName
from pulmogate.receiver.file_meta import peer_of
from pulmogate.receiver.markers import SeriesMarkers
from pulmogate.receiver.recorder import GROUP_MAX
from pulmogate.receiver.records import record_group

log = structlog.get_logger("pulmogate.receiver")


@dataclass
class Recovered:
    """What recovery found: rows rebuilt, series touched, files it could not use."""

    instances: int = 0
    series: list[str] = field(default_factory=list)
    skipped: int = 0
    temporaries: int = 0


def _stored_instance(path: Path, series_uid: str) -> StoredInstance | None:
    """The rows of one file the receiver wrote, or None (not its file, or unreadable)."""
    data = path.read_bytes()
    try:
        ds: Dataset = read_header(data)
    except CannotUnderstand as exc:
        log.warning("recovery: unreadable file left alone", file=path.name, reason=str(exc))
        return None
    meta = ds.file_meta
    peer = peer_of(meta)
    if peer is None or str(ds.SeriesInstanceUID).strip() != series_uid:
        return None
    item = instance_values(
        ds,
        sop_class_uid=str(meta.get("MediaStorageSOPClassUID", "")),
        transfer_syntax_uid=str(meta.get("TransferSyntaxUID", "")),
        path=path,
        size_bytes=len(data),
    )
    received_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return StoredInstance(item, peer, new_for_association=False, received_at=received_at)


def _unrecorded(
    folder: Path, series_uid: str, known: set[str], found: Recovered
) -> list[StoredInstance]:
    """Read the files of ``folder`` that have no row; remove unfinished temporary files."""
    if not folder.is_dir():
        return []
    entries = []
    for name in sorted(os.listdir(folder)):
        path = folder / name
        if name.startswith(TEMP_PREFIX):
            path.unlink(missing_ok=True)
            found.temporaries += 1
            continue
        if not name.endswith(".dcm") or name[: -len(".dcm")] in known:
            continue
        entry = _stored_instance(path, series_uid)
        if entry is None:
            found.skipped += 1
        else:
            entries.append(entry)
    return entries


async def _known_instances(db: Database, series_uid: str) -> set[str]:
    async with db.sessions() as session:
        rows = await session.scalars(
            select(Instance.sop_instance_uid)
            .join(Series, Instance.series_id == Series.id)
            .where(Series.series_uid == series_uid)
        )
        return set(rows)


async def recover_unrecorded(db: Database, storage: Storage, markers: SeriesMarkers) -> Recovered:
    """Record what the marked series folders hold without rows; remove the marks."""
    found = Recovered()
    for study_uid, series_uid in markers.on_disk():
        try:
            folder = storage.instance_path(study_uid, series_uid, "1").parent
        except UnsafeName:
            markers.remove(study_uid, series_uid)
            continue
        known = await _known_instances(db, series_uid)
        entries = await asyncio.to_thread(_unrecorded, folder, series_uid, known, found)
        recorded = 0
        for start in range(0, len(entries), GROUP_MAX):
            outcome = await record_group(db, entries[start : start + GROUP_MAX])
            recorded += outcome.recorded
            for sop in outcome.conflicts:
                log.error(
                    "recovery: SOP Instance UID stored in another series, file left alone",
                    sop_instance_uid=sop,
                )
        if recorded:
            async with db.session() as session:
                await session.execute(
                    update(Series)
                    .where(Series.series_uid == series_uid, Series.status == SeriesStatus.RECEIVING)
                    .values(interrupted_at=utcnow())
                )
            found.instances += recorded
            found.series.append(series_uid)
        markers.remove(study_uid, series_uid)
    if found.instances or found.skipped or found.temporaries:
        log.warning(
            "recovered acknowledged instances without rows",
            instances=found.instances,
            series=len(found.series),
            left_alone=found.skipped,
            temporary_files_removed=found.temporaries,
        )
    return found
