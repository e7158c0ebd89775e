"""Retention: purge the stored files of finished jobs older than their rule's ``ttl_days``.

The router runs the janitor every ``janitor_interval_s``. A job is due when it is final
(done, ignored, rejected, failed, no/expired license), not yet purged, and finished (or,
without a finish time, created) more than ``ttl_days`` ago — the days of the rule that
routed it, ``DEFAULT_TTL_DAYS`` when it has none; ``ttl_days = 0`` keeps a rule's jobs.
Purging deletes the received instance files and the result files, drops the instance rows,
blanks every patient field of the series (``pulmogate.common.phi``: name and its folded
copy, ID, birth date, sex, accession number, study date, time and ID) and sets
``purged_at``; the job row with its status, prediction, figures, timings, log and the UIDs
stays, so the results table still shows what happened. Files go first and the row
second: a crash in between leaves the job due, and the next round finishes it.
"""

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from pulmogate.common.db.models import (
    FINAL_JOB_STATUSES,
    Instance,
    Job,
    RoutingRule,
    Series,
    utcnow,
)
from pulmogate.common.joblog import add_log
from pulmogate.common.phi import patient_columns
from pulmogate.common.runtime import Context
from pulmogate.common.storage import Storage

log = structlog.get_logger("pulmogate.router")

SERVICE = "router"
DEFAULT_TTL_DAYS = 30
BATCH = 200


def _due(job: Job, rule_ttl: dict[int, int], now: datetime) -> bool:
    ttl = rule_ttl.get(job.rule_id, DEFAULT_TTL_DAYS) if job.rule_id else DEFAULT_TTL_DAYS
    if ttl <= 0:
        return False
    return (job.finished_at or job.created_at) < now - timedelta(days=ttl)


async def purge_expired(ctx: Context, *, now: datetime | None = None) -> list[int]:
    """Purge every due job (in batches); return their ids."""
    now = now or utcnow()
    purged: list[int] = []
    checked: list[int] = []
    while True:
        batch, seen = await _purge_batch(ctx, now, exclude=checked)
        purged.extend(batch)
        checked.extend(seen)
        if len(seen) < BATCH:
            return purged


async def _purge_batch(
    ctx: Context, now: datetime, *, exclude: list[int]
) -> tuple[list[int], list[int]]:
    """Purge the due jobs among the next ``BATCH`` candidates; (purged ids, checked ids)."""
    storage: Storage = ctx.storage
    async with ctx.db.session() as session:
        rule_ttl = dict((await session.execute(select(RoutingRule.id, RoutingRule.ttl_days))).all())
        shortest = min([DEFAULT_TTL_DAYS, *[t for t in rule_ttl.values() if t > 0]])
        query = (
            select(Job)
            .where(Job.purged_at.is_(None))
            .where(Job.status.in_([str(s) for s in FINAL_JOB_STATUSES]))
            .where(Job.created_at < now - timedelta(days=shortest))
            .where(Job.id.not_in(exclude or [0]))
            .options(selectinload(Job.outputs))
            .order_by(Job.id)
            .limit(BATCH)
        )
        if not ctx.db.is_sqlite:
            query = query.with_for_update(of=Job, skip_locked=True)
        candidates = (await session.scalars(query)).unique().all()
        done: list[int] = []
        for job in candidates:
            if not _due(job, rule_ttl, now):
                continue
            inputs = list(
                await session.scalars(
                    select(Instance.path).where(Instance.series_id == job.series_id)
                )
            )
            files = [Path(p) for p in [*inputs, *(o.path for o in job.outputs)]]
            await asyncio.to_thread(_purge_files, files, storage, job.id)
            await session.execute(delete(Instance).where(Instance.series_id == job.series_id))
            series = await session.get(Series, job.series_id)
            if series is not None:
                _blank_patient_data(series)
            job.purged_at = now
            ttl = rule_ttl.get(job.rule_id or 0, DEFAULT_TTL_DAYS)
            add_log(
                session,
                job.id,
                SERVICE,
                f"purged by retention ({ttl} days): {len(files)} stored files deleted",
            )
            done.append(job.id)
        if done:
            log.info("retention purged jobs", jobs=len(done))
        return done, [j.id for j in candidates]


def _blank_patient_data(series: Series) -> None:
    """Empty every column of the series that holds patient data (``pulmogate.common.phi``)."""
    for name in patient_columns(Series.__table__.columns.keys()):
        setattr(series, name, "")


def _purge_files(files: list[Path], storage: Storage, job_id: int) -> None:
    """Delete the job's files, then whatever is left of its results folder."""
    for path in files:
        if not storage.remove(path):
            log.warning("not purging a file outside storage", job_file=str(path))
    storage.remove_results(job_id)


async def run_janitor(ctx: Context) -> None:
    """Purge due jobs now and every ``janitor_interval_s`` until cancelled."""
    while True:
        try:
            await purge_expired(ctx)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("retention round failed, will retry")
        await asyncio.sleep(ctx.settings.janitor_interval_s)
