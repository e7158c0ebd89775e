"""The series and instance rows of stored instances, written the same way whoever stored
them: a series row created or updated per instance, all new instance rows in one insert."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import Instance, Series, SeriesStatus
from pulmogate.common.dicom.intake.values import InstanceValues


@dataclass(frozen=True)
class Peer:
    """Who sent an instance: calling AE, called AE, IP address."""

    calling_ae: str
    called_ae: str
    peer_ip: str


@dataclass(frozen=True)
class StoredInstance:
    """An instance whose file is durable: its rows to write."""

    item: InstanceValues
    peer: Peer
    new_for_association: bool
    received_at: datetime


class Added(StrEnum):
    """What ``InstanceRows.add`` did with an instance."""

    NEW = "new"  # an instance row to insert
    DUPLICATE = "duplicate"  # stored once already in the same series: counted, no second row
    CONFLICT = "conflict"  # stored in another series: nothing written


def fill_series(series: Series, item: InstanceValues, peer: Peer) -> None:
    """Set the series row's study, patient, series and sender columns from an instance."""
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


def instance_row(series_id: int, entry: StoredInstance) -> dict[str, object]:
    """The columns of an instance row."""
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


class InstanceRows:
    """Rows of stored instances written in one session (the caller's transaction).

    Series and instances already stored are known only once ``load`` read them (locking
    those series rows); without it every series and instance is taken to be new, and the
    unique constraints refuse the commit when one was not.
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.by_uid: dict[str, Series] = {}
        self._stored_in: dict[str, str] = {}  # SOP Instance UID -> series UID
        self._new_rows: list[dict[str, object]] = []

    async def load(self, series_uids: Iterable[str], sop_uids: Iterable[str]) -> None:
        """Read (and lock) the series rows and which series holds each SOP Instance UID."""
        series_uids, sop_uids = set(series_uids), set(sop_uids)
        if series_uids:
            found = await self.session.scalars(
                select(Series).where(Series.series_uid.in_(series_uids)).with_for_update()
            )
            self.by_uid.update({s.series_uid: s for s in found})
        if sop_uids:
            rows = await self.session.execute(
                select(Instance.sop_instance_uid, Series.series_uid)
                .join(Series, Instance.series_id == Series.id)
                .where(Instance.sop_instance_uid.in_(sop_uids))
            )
            self._stored_in.update({sop: series_uid for sop, series_uid in rows.all()})

    async def add(self, entry: StoredInstance) -> Added:
        """Create or update the instance's series row and queue its instance row.

        A late instance reopens an announced series (completion announces it again); one
        already stored in the same series is counted in ``resent_instances`` and does not
        reopen it; ``new_for_association`` counts one more open association.
        """
        item = entry.item
        other = self._stored_in.get(item.sop_instance_uid)
        if other is not None and other != item.series_uid:
            return Added.CONFLICT
        series = self.by_uid.get(item.series_uid)
        if series is None:
            series = Series(
                series_uid=item.series_uid,
                status=SeriesStatus.RECEIVING,
                instance_count=0,
                open_associations=0,
                first_received_at=entry.received_at,
                last_received_at=entry.received_at,
            )
            fill_series(series, item, entry.peer)
            self.session.add(series)
            await self.session.flush()
            self.by_uid[item.series_uid] = series
        if entry.new_for_association:
            series.open_associations += 1
        series.last_received_at = max(series.last_received_at, entry.received_at)
        if other is not None:
            series.resent_instances += 1
            return Added.DUPLICATE
        if series.status != SeriesStatus.RECEIVING:
            series.status = SeriesStatus.RECEIVING
            series.completed_at = None
        fill_series(series, item, entry.peer)
        series.instance_count += 1
        self._new_rows.append(instance_row(series.id, entry))
        self._stored_in[item.sop_instance_uid] = item.series_uid
        return Added.NEW

    async def write(self) -> int:
        """Insert the queued instance rows; how many."""
        rows, self._new_rows = self._new_rows, []
        if rows:
            await self.session.execute(insert(Instance), rows)
        return len(rows)
