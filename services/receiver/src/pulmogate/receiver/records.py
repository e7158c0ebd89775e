"""Database writes of the receiver: instance rows of stored files in groups, association counts."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from pulmogate.common.db.models import Series, SeriesStatus, utcnow
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.intake.rows import Added, InstanceRows, StoredInstance

INSERT_ATTEMPTS = 3


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


async def _record_group_once(db: Database, entries: Sequence[Entry]) -> GroupOutcome:
    stores = [e for e in entries if isinstance(e, StoredInstance)]
    series_uids = {e.item.series_uid for e in stores}
    for entry in entries:
        if isinstance(entry, AssociationEnded):
            series_uids.update(entry.series_uids)
    outcome = GroupOutcome()
    async with db.session() as session:
        rows = InstanceRows(session)
        await rows.load(series_uids, {e.item.sop_instance_uid for e in stores})
        for entry in entries:
            if isinstance(entry, AssociationEnded):
                for uid in entry.series_uids:
                    released = rows.by_uid.get(uid)
                    if released is not None and released.open_associations > 0:
                        released.open_associations -= 1
                        released.last_released_at = entry.at
                continue
            added = await rows.add(entry)
            if added is Added.CONFLICT:
                outcome.conflicts.append(entry.item.sop_instance_uid)
            elif added is Added.DUPLICATE:
                outcome.duplicates += 1
        outcome.recorded = await rows.write()
        outcome.series_ids = {uid: s.id for uid, s in rows.by_uid.items()}
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
