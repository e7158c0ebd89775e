"""When is a series done: the completion loop that announces ``series.arrived``.

A series in RECEIVING is complete when

* no association that brought it is still open (``open_associations == 0``: each
  association that stored an instance of it decrements the count when it is released,
  aborted or dropped) and no instance arrived for ``series_quiet_seconds``; or
* no instance arrived for ``series_idle_seconds``, even while an association stays open
  (a modality that keeps one association up all day).

Completion is one transaction: status COMPLETE, ``completed_at`` and the
``SeriesArrived`` event in the outbox. The update is conditional on the series still
being RECEIVING with the instance count that was judged, so an instance that lands in
between (or a second receiver replica) never causes a stale or double announcement.

Late instances (policy): an instance of a series that was already announced (COMPLETE,
or ROUTED by the router) puts the series back to RECEIVING; when it is quiet again it is
announced again with the new instance count (and how many of the instances that came
meanwhile were already stored). The router owns what a second ``series.arrived`` means
for a series that already has a job (Job.series_id is unique): it re-opens the job.

Resends: an instance already stored does not reopen the series; it is counted in
``resent_instances``. When an announced series that received such instances is complete
again by the same rule (no association holding it, quiet), ``series.resent`` says so once
(with the count), and the router writes it in the job log.

After a restart the receiver sets ``open_associations`` to 0 (those associations died with
the old process). A RECEIVING series that had one open is *interrupted*: the sender was
cut off and will likely send the rest, so it is announced only when nothing arrived for
``series_idle_seconds`` after the restart; an instance that arrives after the restart
brings back the usual rule.
"""

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select, update

from pulmogate.common.db.models import Series, SeriesStatus, utcnow
from pulmogate.common.db.session import Database
from pulmogate.common.dicom.intake.announce import announce_arrival
from pulmogate.common.events import SeriesResent
from pulmogate.common.metrics import SERIES_COMPLETED
from pulmogate.common.outbox import enqueue

log = structlog.get_logger("pulmogate.receiver")

CHECK_INTERVAL_S = 0.5


def is_complete(
    *,
    open_associations: int,
    last_received_at: datetime,
    now: datetime,
    quiet_s: float,
    idle_s: float,
    interrupted_at: datetime | None = None,
) -> bool:
    """The completion rule: quiet with no open association, or idle for long; a series
    interrupted by a restart, with nothing received since, waits the idle time after it."""
    if interrupted_at is not None and last_received_at <= interrupted_at:
        return now - interrupted_at >= timedelta(seconds=idle_s)
    silent_for = now - last_received_at
    if open_associations <= 0 and silent_for >= timedelta(seconds=quiet_s):
        return True
    return silent_for >= timedelta(seconds=idle_s)


def _nothing_pending(_series_uid: str) -> bool:
    return False


async def complete_ready_series(
    db: Database,
    *,
    quiet_s: float,
    idle_s: float,
    pending: Callable[[str], bool] = _nothing_pending,
) -> list[int]:
    """Announce every series that is complete now, and every resend that has ended;
    return the ids of the series announced as complete. A series with an acknowledged
    instance whose row is not committed yet (``pending``) waits for it."""
    now = utcnow()
    async with db.session() as session:
        rows = (
            await session.execute(
                select(
                    Series.id,
                    Series.series_uid,
                    Series.instance_count,
                    Series.open_associations,
                    Series.last_received_at,
                    Series.interrupted_at,
                ).where(Series.status == SeriesStatus.RECEIVING)
            )
        ).all()
        resent = (
            await session.execute(
                select(
                    Series.id,
                    Series.series_uid,
                    Series.resent_instances,
                    Series.open_associations,
                    Series.last_received_at,
                ).where(Series.status != SeriesStatus.RECEIVING, Series.resent_instances > 0)
            )
        ).all()
    ready = [
        (series_id, count)
        for series_id, series_uid, count, open_assocs, last, interrupted_at in rows
        if not pending(series_uid)
        and is_complete(
            open_associations=open_assocs,
            last_received_at=last,
            now=now,
            quiet_s=quiet_s,
            idle_s=idle_s,
            interrupted_at=interrupted_at,
        )
    ]
    done = []
    for series_id, count in ready:
        if await _announce(db, series_id, count):
            done.append(series_id)
    for series_id, series_uid, count, open_assocs, last in resent:
        if not pending(series_uid) and is_complete(
            open_associations=open_assocs,
            last_received_at=last,
            now=now,
            quiet_s=quiet_s,
            idle_s=idle_s,
        ):
            await _announce_resent(db, series_id, count)
    return done


async def _announce(db: Database, series_id: int, instance_count: int) -> bool:
    """Mark one series COMPLETE and stage its event, if nothing changed meanwhile."""
    async with db.session() as session:
        result = await session.execute(
            update(Series)
            .where(
                Series.id == series_id,
                Series.status == SeriesStatus.RECEIVING,
                Series.instance_count == instance_count,
            )
            .values(status=SeriesStatus.COMPLETE, completed_at=utcnow())
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        series = await session.get(Series, series_id)
        assert series is not None
        await session.refresh(series)
        again, series.resent_instances = series.resent_instances, 0
        announce_arrival(session, series, received_again=again)
        log.info(
            "series complete",
            series_id=series.id,
            series_uid=series.series_uid,
            instances=series.instance_count,
            received_again=again,
            open_associations=series.open_associations,
        )
    SERIES_COMPLETED.inc()
    return True


async def _announce_resent(db: Database, series_id: int, resent: int) -> bool:
    """Stage ``series.resent`` for an announced series whose resend has ended, once."""
    async with db.session() as session:
        result = await session.execute(
            update(Series)
            .where(
                Series.id == series_id,
                Series.status != SeriesStatus.RECEIVING,
                Series.resent_instances == resent,
            )
            .values(resent_instances=0)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        series = await session.get(Series, series_id)
        assert series is not None
        enqueue(
            session,
            SeriesResent(
                series_id=series.id,
                series_uid=series.series_uid,
                calling_ae=series.calling_ae,
                peer_ip=series.peer_ip,
                instances=resent,
            ),
        )
        log.info(
            "series received again, nothing new",
            series_id=series.id,
            series_uid=series.series_uid,
            instances=resent,
        )
    return True


async def run_completion(
    db: Database,
    *,
    quiet_s: float,
    idle_s: float,
    pending: Callable[[str], bool] = _nothing_pending,
) -> None:
    """Check the database for complete series every ``CHECK_INTERVAL_S`` until cancelled."""
    while True:
        try:
            await complete_ready_series(db, quiet_s=quiet_s, idle_s=idle_s, pending=pending)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("series completion check failed, will retry", error=repr(exc))
        await asyncio.sleep(CHECK_INTERVAL_S)
