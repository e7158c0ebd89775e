"""Database writes of the receiver: one instance row per stored file, association counts."""

from dataclasses import dataclass

from sqlalchemy import select, update
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
class Recorded:
    """Outcome of recording an instance."""

    series_id: int
    duplicate: bool


async def record_instance(
    db: Database, item: ReceivedInstance, peer: Peer, *, new_for_association: bool
) -> Recorded:
    """Create or update the series row and add the instance row, in one transaction.

    ``new_for_association`` is True for the first instance of this series on this
    association: the series then counts one more open association. A SOP Instance UID
    already recorded is a duplicate: no second row, the series is only touched.
    """
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            return await _record_once(db, item, peer, new_for_association)
        except IntegrityError:
            # A concurrent writer created the same series or instance first: read it again.
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


async def _record_once(
    db: Database, item: ReceivedInstance, peer: Peer, new_for_association: bool
) -> Recorded:
    now = utcnow()
    async with db.session() as session:
        stored_in = await session.scalar(
            select(Series.series_uid)
            .join(Instance, Instance.series_id == Series.id)
            .where(Instance.sop_instance_uid == item.sop_instance_uid)
        )
        if stored_in is not None and stored_in != item.series_uid:
            raise InstanceConflict("SOP Instance UID already stored in another series")
        series = await session.scalar(
            select(Series).where(Series.series_uid == item.series_uid).with_for_update()
        )
        if series is None:
            series = Series(
                series_uid=item.series_uid,
                status=SeriesStatus.RECEIVING,
                instance_count=0,
                open_associations=0,
                first_received_at=now,
            )
            _fill_series(series, item, peer)
            session.add(series)
            await session.flush()
        if new_for_association:
            series.open_associations += 1
        existing = await session.scalar(
            select(Instance.id).where(Instance.sop_instance_uid == item.sop_instance_uid)
        )
        if existing is not None:
            # Stored once already: no second row and the series is not reopened; it is
            # counted, so completion can say the series was received again.
            series.resent_instances += 1
            series.last_received_at = now
            return Recorded(series.id, duplicate=True)
        if series.status != SeriesStatus.RECEIVING:
            # A late instance reopens the series; completion announces it again.
            series.status = SeriesStatus.RECEIVING
            series.completed_at = None
        series.last_received_at = now
        _fill_series(series, item, peer)
        series.instance_count += 1
        session.add(
            Instance(
                series_id=series.id,
                sop_instance_uid=item.sop_instance_uid,
                sop_class_uid=item.sop_class_uid,
                transfer_syntax_uid=item.transfer_syntax_uid,
                path=item.path,
                size_bytes=item.size_bytes,
                instance_number=item.instance_number,
                rows=item.rows,
                columns=item.columns,
                pixel_spacing=item.pixel_spacing[:64],
                slice_thickness=item.slice_thickness,
                modality=item.modality[:16],
                received_at=now,
            )
        )
        return Recorded(series.id, duplicate=False)


async def release_association(db: Database, series_ids: list[int]) -> None:
    """One association ended: each series it brought has one open association fewer."""
    if not series_ids:
        return
    now = utcnow()
    async with db.session() as session:
        await session.execute(
            update(Series)
            .where(Series.id.in_(series_ids), Series.open_associations > 0)
            .values(open_associations=Series.open_associations - 1, last_released_at=now)
        )


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
