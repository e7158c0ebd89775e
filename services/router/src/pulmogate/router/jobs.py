"""Job creation and the router's state transitions (all inside the caller's transaction).

A job is decided on the instances its series holds at that moment, and remembers how many
(``analysed_instance_count``; inference sets it again when the analysis reads them). When
the series holds more later (a resend after a crash, a disk-full episode, a late slice),
the job is re-opened: its previous results are dropped, the rules, checks and license are
applied again to every instance, and a job that passes is analysed and delivered again.
Re-opening waits for an analysis in progress and for a delivery being sent; a queued job
needs nothing (its analysis reads every instance when it starts). A job purged by
retention is never re-opened (its instances are gone).
"""

import asyncio
from pathlib import Path

import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import (
    Delivery,
    DeliveryStatus,
    Instance,
    Job,
    JobStatus,
    OutputObject,
    Series,
    SeriesStatus,
)
from pulmogate.common.events import AnalysisRequested
from pulmogate.common.joblog import add_log
from pulmogate.common.lifecycle import REOPENABLE, analysis_gone, mark_final, queue, reopen
from pulmogate.common.outbox import enqueue
from pulmogate.common.refusals import Refusal, RefusalCode
from pulmogate.common.settings import Settings
from pulmogate.common.storage import Storage
from pulmogate.router.checks import check_series, numbering_gaps
from pulmogate.router.license import check_license
from pulmogate.router.notices import request_notice
from pulmogate.router.rules import rule_for

log = structlog.get_logger("pulmogate.router")

SERVICE = "router"

REFUSAL_STATUS = {
    RefusalCode.NO_LICENSE: JobStatus.NO_LICENSE,
    RefusalCode.LICENSE_EXPIRED: JobStatus.LICENSE_EXPIRED,
    RefusalCode.LICENSE_DAILY_LIMIT: JobStatus.NO_LICENSE,
}


async def job_of_series(session: AsyncSession, series_id: int) -> Job | None:
    """The series' job, if it has one (one job per series)."""
    return await session.scalar(select(Job).where(Job.series_id == series_id))


async def route_series(session: AsyncSession, series: Series, settings: Settings) -> Job:
    """Create the series' job and decide it (see ``decide``).

    The caller has checked that the series has no job yet.
    """
    job = Job(series_id=series.id)
    session.add(job)
    await session.flush()
    await decide(session, job, series, settings)
    return job


def _interrupted(series: Series, settings: Settings) -> str | None:
    """A note when the series was cut off by a restart and nothing came after it."""
    if series.interrupted_at is None or series.last_received_at > series.interrupted_at:
        return None
    return (
        "the series was cut off by a restart of the gateway and nothing more arrived for "
        f"{settings.series_idle_seconds:g} s: it may not be whole"
    )


async def decide(session: AsyncSession, job: Job, series: Series, settings: Settings) -> None:
    """Rules, input checks and license on the series' instances now: IGNORED (no rule),
    REJECTED / NO_LICENSE (with the reason), or QUEUED with ``analysis.requested``.

    A series that is receiving again stays RECEIVING: its completion announces it again.
    """
    if series.status == SeriesStatus.COMPLETE:
        series.status = SeriesStatus.ROUTED
    rule, no_match = await rule_for(
        session, series, timeout_s=settings.rule_regex_timeout_ms / 1000
    )
    job.rule_id = rule.id if rule else None
    instances = (
        await session.scalars(select(Instance).where(Instance.series_id == series.id))
    ).all()
    job.analysed_instance_count = len(instances)
    if rule is None:
        mark_final(job, JobStatus.IGNORED, code=RefusalCode.NO_MATCHING_RULE, reason=no_match)
        add_log(session, job.id, SERVICE, f"ignored: {no_match}", level="warning")
        log.info("series ignored", series_id=series.id, job_id=job.id)
        return
    refusal: Refusal | None = check_series(
        instances,
        max_slice_thickness_mm=settings.max_slice_thickness_mm,
        min_slices=settings.min_slices,
    ) or await check_license(session, series, settings)
    if refusal is not None:
        status = REFUSAL_STATUS.get(refusal.code, JobStatus.REJECTED)
        mark_final(job, status, code=refusal.code, reason=refusal.message)
        add_log(
            session,
            job.id,
            SERVICE,
            f"rule {rule.name!r} matched; rejected: {refusal}",
            level="error",
        )
        log.info("series rejected", series_id=series.id, job_id=job.id, code=str(refusal.code))
        await request_notice(session, job)
        return
    queue(job)
    add_log(
        session,
        job.id,
        SERVICE,
        f"rule {rule.name!r} matched; {len(instances)} slices passed the input checks; "
        "queued for analysis",
    )
    notes = [n for n in (numbering_gaps(instances), _interrupted(series, settings)) if n]
    if notes:
        add_log(
            session,
            job.id,
            SERVICE,
            "; ".join(notes) + ": it is analysed again if more instances arrive",
            level="warning",
        )
    enqueue(session, AnalysisRequested(job_id=job.id))
    log.info("job queued", series_id=series.id, job_id=job.id, rule_id=rule.id)


async def delivery_in_progress(session: AsyncSession, job: Job) -> bool:
    """A delivery of the job's results is being sent right now."""
    sending = await session.scalar(
        select(Delivery.id).where(
            Delivery.job_id == job.id, Delivery.status == DeliveryStatus.SENDING
        )
    )
    return sending is not None


async def can_reopen_now(session: AsyncSession, job: Job) -> bool:
    """No analysis runs and nothing is being sent (or the analysing process is gone)."""
    if job.status == JobStatus.ANALYSING:
        return analysis_gone(job)
    return job.status in REOPENABLE and not await delivery_in_progress(session, job)


async def reopen_job(
    session: AsyncSession,
    job: Job,
    series: Series,
    settings: Settings,
    storage: Storage,
    *,
    reason: str,
    intro: str,
) -> None:
    """Drop the job's previous results (rows and files) and decide it again."""
    outputs = list(
        await session.scalars(select(OutputObject.path).where(OutputObject.job_id == job.id))
    )
    if outputs:
        await session.execute(delete(OutputObject).where(OutputObject.job_id == job.id))
        # Removed before the commit: if it fails, the message is retried and this runs again.
        await asyncio.to_thread(_remove, storage, [Path(p) for p in outputs])
    reopen(job, reason)
    dropped = f"; the {len(outputs)} result objects of the previous analysis are replaced"
    add_log(session, job.id, SERVICE, intro + (dropped if outputs else ""))
    log.info("job re-opened", job_id=job.id, reason=reason, outputs_dropped=len(outputs))
    await decide(session, job, series, settings)


def _remove(storage: Storage, paths: list[Path]) -> None:
    for path in paths:
        storage.remove(path)


async def reconsider(
    session: AsyncSession,
    job: Job,
    series: Series,
    settings: Settings,
    storage: Storage,
    *,
    received_again: int = 0,
) -> str:
    """What the series' instances now mean for its job; returns what was done.

    More instances than the job was decided on re-open it (or are noted, to re-open it
    once the analysis or delivery in progress ends); the same instances again are noted.
    """
    if series.status == SeriesStatus.RECEIVING:
        return "receiving"  # more is arriving: the next announcement decides
    if series.status == SeriesStatus.COMPLETE:
        series.status = SeriesStatus.ROUTED
    before = job.analysed_instance_count or 0
    count = series.instance_count
    again = f" ({received_again} received again, {count - before} new)" if received_again else ""
    if job.purged_at is not None:
        if count > before or received_again:
            add_log(
                session,
                job.id,
                SERVICE,
                "instances of the series arrived after retention purged this job: "
                "not analysed again (delete the job and send the series again)",
                level="warning",
            )
        return "purged"
    if count <= before:
        if received_again:
            add_log(
                session,
                job.id,
                SERVICE,
                f"series received again: {received_again} instances, all already stored; "
                "no new analysis",
            )
        return "unchanged"
    grew = f"series grew from {before} to {count} instances{again}"
    if job.status == JobStatus.QUEUED:
        add_log(session, job.id, SERVICE, f"{grew}; the analysis, not started yet, reads them all")
        return "queued"
    if not await can_reopen_now(session, job):
        waiting = (
            "the analysis in progress"
            if job.status == JobStatus.ANALYSING
            else "the delivery in progress"
        )
        add_log(session, job.id, SERVICE, f"{grew}; checked and analysed again after {waiting}")
        return "waiting"
    await reopen_job(
        session,
        job,
        series,
        settings,
        storage,
        reason="grown",
        intro=f"{grew}: checked and analysed again",
    )
    return "reopened"
