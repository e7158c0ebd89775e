"""Database writes of the receiver: instance rows of stored files in groups, association counts."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from pulmogate.common.db.models import Instance, Series, SeriesStatus, utcnow
from pulmogate.common.db.session import Database

INSERT_ATTEMPTS = 3


@dataclass(frozen=True)
class Peer:
    """Who sent an association: calling AE, called AE, IP address."""

    calling_ae: str
    called_ae: str
    peer_ip: str


@dataclass(frozen=True)
class ReceivedInstance:
    """What the receiver keeps of one stored instance (patient fields go to the DB only)."""

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


class InstanceConflict(ValueError):
    """The SOP Instance UID is already stored in another series (a peer reusing UIDs)."""


@dataclass(frozen=True)
class StoredInstance:
    """An instance whose file is durable (acknowledged or about to be): its rows to record."""

    item: ReceivedInstance
    peer: Peer
    new_for_association: bool
    received_at: datetime


@dataclass(frozen=True)
class AssociationEnded:
    """An association ended: each series it brought has one open association fewer."""

    series_uids: tuple[str, ...]  # the series it counted as open
    held: tuple[tuple[str, str], ...]  # (study UID, series UID) of the series marks it held
    at: datetime


Entry = StoredInstance | AssociationEnded


@dataclass
class GroupOutcome:
    """What recording a group did: new rows, duplicates, and conflicts (SOP Instance UIDs
    already stored in another series, left without a row)."""

    recorded: int = 0
    duplicates: int = 0
    conflicts: list[str] = field(default_factory=list)
    series_ids: dict[str, int] = field(default_factory=dict)


async def record_group(db: Database, entries: Sequence[Entry]) -> GroupOutcome:
    """Record stored instances and ended associations, in order, in one transaction.

    Per instance as before: the series row is created or updated (a late instance reopens
    it), an instance row is added; a SOP Instance UID already recorded in the same series is
    a duplicate (no second row, counted in ``resent_instances``); ``new_for_association``
    counts one more open association. One commit (one fsync) for the whole group.
    """
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            return await _record_group_once(db, entries)
        except IntegrityError:
            # A concurrent writer (an upload) created the same series or instance first.
            if attempt == INSERT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _fill_series(series: Series, item: ReceivedInstance, peer: Peer) -> None:
    series.study_uid = item.study_uid
    series.patient_name = item.patient_name[:200]
    series.patient_id = item.patient_id[:64]
    series.study_date = item.study_date[:8]
    series.accession_number = item.accession_number[:64]
    series.study_description = item.study_description[:200]
    series.series_description = item.series_description[:200]
    series.modality = item.modality[:16]
    series.study_time = item.study_time[:16]
    series.study_id = item.study_id[:16]
    series.patient_birth_date = item.patient_birth_date[:8]
    series.patient_sex = item.patient_sex[:16]
    series.series_number = item.series_number
    series.calling_ae = peer.calling_ae[:16]
    series.called_ae = peer.called_ae[:16]
    series.peer_ip = peer.peer_ip[:45]


def _instance_row(series_id: int, entry: StoredInstance) -> dict[str, object]:
    item = entry.item
    return {
        "series_id": series_id,
        "sop_instance_uid": item.sop_instance_uid,
        "sop_class_uid": item.sop_class_uid,
        "transfer_syntax_uid": item.transfer_syntax_uid,
        "path": item.path,
        "size_bytes": item.size_bytes,
        "instance_number": item.instance_number,
        "rows": item.rows,
        "columns": item.columns,
        "pixel_spacing": item.pixel_spacing[:64],
        "slice_thickness": item.slice_thickness,
        "modality": item.modality[:16],
        "received_at": entry.received_at,
    }


async def _record_group_once(db: Database, entries: Sequence[Entry]) -> GroupOutcome:
    stores = [e for e in entries if isinstance(e, StoredInstance)]
    series_uids = {e.item.series_uid for e in stores}
    for entry in entries:
        if isinstance(entry, AssociationEnded):
            series_uids.update(entry.series_uids)
    outcome = GroupOutcome()
    async with db.session() as session:
        by_uid: dict[str, Series] = {}
        if series_uids:
            found = await session.scalars(
                select(Series).where(Series.series_uid.in_(series_uids)).with_for_update()
            )
            by_uid = {s.series_uid: s for s in found}
        stored_in: dict[str, str] = {}
        if stores:
            rows = await session.execute(
                select(Instance.sop_instance_uid, Series.series_uid)
                .join(Series, Instance.series_id == Series.id)
                .where(Instance.sop_instance_uid.in_({e.item.sop_instance_uid for e in stores}))
            )
            stored_in = {sop: series_uid for sop, series_uid in rows.all()}
        new_rows: list[dict[str, object]] = []
        for entry in entries:
            if isinstance(entry, AssociationEnded):
                for uid in entry.series_uids:
                    released = by_uid.get(uid)
                    if released is not None and released.open_associations > 0:
                        released.open_associations -= 1
                        released.last_released_at = entry.at
                continue
            item = entry.item
            other = stored_in.get(item.sop_instance_uid)
            if other is not None and other != item.series_uid:
                outcome.conflicts.append(item.sop_instance_uid)
                continue
            series = by_uid.get(item.series_uid)
            if series is None:
                series = Series(
                    series_uid=item.series_uid,
                    status=SeriesStatus.RECEIVING,
                    instance_count=0,
                    open_associations=0,
                    first_received_at=entry.received_at,
                    last_received_at=entry.received_at,
                )
                _fill_series(series, item, entry.peer)
                session.add(series)
                await session.flush()
                by_uid[item.series_uid] = series
            if entry.new_for_association:
                series.open_associations += 1
            if other is not None:
                # Stored once already: no second row and the series is not reopened; it is
                # counted, so completion can say the series was received again.
                series.resent_instances += 1
                series.last_received_at = max(series.last_received_at, entry.received_at)
                outcome.duplicates += 1
                continue
            if series.status != SeriesStatus.RECEIVING:
                # A late instance reopens the series; completion announces it again.
                series.status = SeriesStatus.RECEIVING
                series.completed_at = None
            series.last_received_at = max(series.last_received_at, entry.received_at)
            _fill_series(series, item, entry.peer)
            series.instance_count += 1
            new_rows.append(_instance_row(series.id, entry))
            stored_in[item.sop_instance_uid] = item.series_uid
        if new_rows:
            await session.execute(insert(Instance), new_rows)
        outcome.recorded = len(new_rows)
        outcome.series_ids = {uid: s.id for uid, s in by_uid.items()}
    return outcome


async def reset_open_associations(db: Database) -> int:
    """After a restart no association of the old process is open; returns rows reset.

    A series still RECEIVING with an open association was cut off by the old process's
    end: it is marked interrupted (completion then waits ``series_idle_seconds`` for the
    rest, see completion.py).
    """
    now = utcnow()
    async with db.session() as session:
        cut = await session.execute(
            update(Series)
            .where(Series.status == SeriesStatus.RECEIVING, Series.open_associations != 0)
            .values(open_associations=0, interrupted_at=now)
        )
        others = await session.execute(
            update(Series)
            .where(Series.status != SeriesStatus.RECEIVING, Series.open_associations != 0)
            .values(open_associations=0)
        )
        return int(cut.rowcount or 0) + int(others.rowcount or 0)  # type: ignore[attr-defined]
