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
announced again with the new instance count. A resent instance that is already stored
does not reopen the series. The router owns what a second ``series.arrived`` means for a
series that already has a job (Job.series_id is unique): a no-op, or a re-analysis.

After a restart the receiver sets ``open_associations`` to 0 for RECEIVING series (their
associations died with the old process), so they complete after the quiet period.
"""

import asyncio
from datetime import datetime, timedelta

import structlog
from sqlalchemy import select, update

from pulmogate.common.db.models import Series, SeriesStatus, utcnow
from pulmogate.common.db.session import Database
from pulmogate.common.events import SeriesArrived
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
) -> bool:
    """The completion rule: quiet with no open association, or idle for long."""
    silent_for = now - last_received_at
    if open_associations <= 0 and silent_for >= timedelta(seconds=quiet_s):
        return True
    return silent_for >= timedelta(seconds=idle_s)


async def complete_ready_series(db: Database, *, quiet_s: float, idle_s: float) -> list[int]:
    """Announce every series that is complete now; return their ids."""
    now = utcnow()
    async with db.session() as session:
        rows = (
            await session.execute(
                select(
                    Series.id,
                    Series.instance_count,
                    Series.open_associations,
                    Series.last_received_at,
                ).where(Series.status == SeriesStatus.RECEIVING)
            )
        ).all()
    ready = [
        (series_id, count)
        for series_id, count, open_assocs, last in rows
        if is_complete(
            open_associations=open_assocs,
            last_received_at=last,
            now=now,
            quiet_s=quiet_s,
            idle_s=idle_s,
        )
    ]
    done = []
    for series_id, count in ready:
        if await _announce(db, series_id, count):
            done.append(series_id)
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
        enqueue(
            session,
            SeriesArrived(
                series_id=series.id,
                study_uid=series.study_uid,
                series_uid=series.series_uid,
                calling_ae=series.calling_ae,
                called_ae=series.called_ae,
                peer_ip=series.peer_ip,
                study_description=series.study_description,
                series_description=series.series_description,
                modality=series.modality,
                instance_count=series.instance_count,
            ),
        )
        log.info(
            "series complete",
            series_id=series.id,
            series_uid=series.series_uid,
            instances=series.instance_count,
            open_associations=series.open_associations,
        )
    SERIES_COMPLETED.inc()
    return True


async def run_completion(db: Database, *, quiet_s: float, idle_s: float) -> None:
    """Check the database for complete series every ``CHECK_INTERVAL_S`` until cancelled."""
    while True:
        try:
            await complete_ready_series(db, quiet_s=quiet_s, idle_s=idle_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("series completion check failed, will retry", error=repr(exc))
        await asyncio.sleep(CHECK_INTERVAL_S)
