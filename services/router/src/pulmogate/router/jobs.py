"""Job creation and the router's state transitions (all inside the caller's transaction)."""

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import (
    Delivery,
    DeliveryStatus,
    Instance,
    Job,
    JobStatus,
    RoutingRule,
    Series,
    SeriesStatus,
    utcnow,
)
from pulmogate.common.events import AnalysisRequested, DeliveryRequested
from pulmogate.common.joblog import add_log
from pulmogate.common.metrics import JOBS_FINISHED
from pulmogate.common.outbox import enqueue
from pulmogate.common.refusals import Refusal, RefusalCode
from pulmogate.common.settings import Settings
from pulmogate.router.checks import check_series
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


def _finish(session: AsyncSession, job: Job, status: JobStatus, code: str, reason: str) -> None:
    job.status = status
    job.reason_code = code
    job.reason = reason
    job.finished_at = utcnow()
    JOBS_FINISHED.labels(status=status).inc()


async def route_series(session: AsyncSession, series: Series, settings: Settings) -> Job:
    """Create the series' job: IGNORED (no rule), REJECTED (checks), or QUEUED + AnalysisRequested.

    The caller has checked that the series has no job yet.
    """
    rule, no_match = await rule_for(session, series)
    job = Job(series_id=series.id, rule_id=rule.id if rule else None)
    session.add(job)
    series.status = SeriesStatus.ROUTED
    if rule is None:
        _finish(session, job, JobStatus.IGNORED, RefusalCode.NO_MATCHING_RULE, no_match)
        await session.flush()
        add_log(session, job.id, SERVICE, f"ignored: {no_match}", level="warning")
        log.info("series ignored", series_id=series.id, job_id=job.id)
        return job
    instances = (
        await session.scalars(select(Instance).where(Instance.series_id == series.id))
    ).all()
    refusal: Refusal | None = check_series(
        instances,
        max_slice_thickness_mm=settings.max_slice_thickness_mm,
        min_slices=settings.min_slices,
    ) or await check_license(session, series, settings)
    if refusal is not None:
        status = REFUSAL_STATUS.get(refusal.code, JobStatus.REJECTED)
        _finish(session, job, status, refusal.code, refusal.message)
        await session.flush()
        add_log(
            session,
            job.id,
            SERVICE,
            f"rule {rule.name!r} matched; rejected: {refusal}",
            level="error",
        )
        log.info("series rejected", series_id=series.id, job_id=job.id, code=str(refusal.code))
        await request_notice(session, job)
        return job
    job.status = JobStatus.QUEUED
    await session.flush()
    add_log(
        session,
        job.id,
        SERVICE,
        f"rule {rule.name!r} matched; {len(instances)} slices passed the input checks; "
        "queued for analysis",
    )
    enqueue(session, AnalysisRequested(job_id=job.id))
    log.info("job queued", series_id=series.id, job_id=job.id, rule_id=rule.id)
    return job


async def plan_deliveries(session: AsyncSession, job: Job) -> list[Delivery]:
    """For an ANALYSED job: one PENDING delivery per enabled destination of its rule.

    Each new delivery is announced with DeliveryRequested and the job moves to DELIVERING;
    without destinations the job is DONE. Jobs in any other state are left alone.
    """
    if job.status != JobStatus.ANALYSED:
        return []
    rule = await session.get(RoutingRule, job.rule_id) if job.rule_id is not None else None
    destinations = [d for d in (rule.destinations if rule else []) if d.enabled]
    if not destinations:
        job.status = JobStatus.DONE
        job.finished_at = utcnow()
        note = "no destinations configured" + ("" if rule else " (the rule was deleted)")
        add_log(session, job.id, SERVICE, f"{note}; job done")
        JOBS_FINISHED.labels(status=JobStatus.DONE).inc()
        return []
    existing = set(
        await session.scalars(select(Delivery.destination_id).where(Delivery.job_id == job.id))
    )
    created = [
        Delivery(job_id=job.id, destination_id=d.id, status=DeliveryStatus.PENDING)
        for d in destinations
        if d.id not in existing
    ]
    session.add_all(created)
    await session.flush()
    for delivery in created:
        enqueue(session, DeliveryRequested(delivery_id=delivery.id))
    job.status = JobStatus.DELIVERING
    names = ", ".join(f"{d.name} ({d.ae_title}@{d.host}:{d.port})" for d in destinations)
    add_log(session, job.id, SERVICE, f"delivering results to {names}")
    return created
