"""Failure notices: tell the PACS when a series gets no analysis, so "failed" is not "running".

A job of a rule with enabled destinations and ``failure_notices`` on that ends rejected,
failed (by the analysis) or without a license gets a notice: the router asks inference for
it (``notice.requested``), inference stores a page and an SR as the job's outputs and
answers ``analysis.finished``, and the router then plans one delivery per destination as
for results. The job keeps its status and reason; the deliveries show in the job.
Ignored jobs (no rule) and failed deliveries never get one.
"""

import structlog
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import (
    FAILURE_NOTICE_KINDS,
    NO_RESULT_STATUSES,
    Delivery,
    DeliveryStatus,
    Job,
    JobLog,
    OutputObject,
    RoutingRule,
)
from pulmogate.common.events import DeliveryRequested, NoticeRequested
from pulmogate.common.joblog import add_log
from pulmogate.common.lifecycle import new_delivery, restart_delivery
from pulmogate.common.outbox import enqueue

log = structlog.get_logger("pulmogate.router")

SERVICE = "router"
NOTICE_STATUSES = NO_RESULT_STATUSES
REQUESTED = "failure notice requested for the rule's destinations"
REQUESTED_AGAIN = f"{REQUESTED} again (the request ended with the process that stopped)"


async def _rule(session: AsyncSession, job: Job) -> RoutingRule | None:
    return await session.get(RoutingRule, job.rule_id) if job.rule_id is not None else None


async def _has_notice(session: AsyncSession, job: Job) -> bool:
    found = await session.scalar(
        select(OutputObject.id).where(
            OutputObject.job_id == job.id, OutputObject.kind.in_(FAILURE_NOTICE_KINDS)
        )
    )
    return found is not None


async def notice_wanted(session: AsyncSession, job: Job) -> bool:
    """True for a job that ended without results under a rule that wants notices sent."""
    if job.status not in NOTICE_STATUSES or not job.reason_code:
        return False
    rule = await _rule(session, job)
    return bool(rule and rule.failure_notices and any(d.enabled for d in rule.destinations))


async def request_notice(session: AsyncSession, job: Job, *, again: bool = False) -> bool:
    """Ask inference for the job's notice when one is wanted and none exists; True if asked.
    ``again``: the earlier request was lost (``lost_notice_requests``)."""
    if not await notice_wanted(session, job) or await _has_notice(session, job):
        return False
    # Deliveries left from an earlier round of a re-opened job carry the notice this time.
    for delivery in await session.scalars(select(Delivery).where(Delivery.job_id == job.id)):
        if delivery.status in (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED):
            restart_delivery(delivery)
    enqueue(session, NoticeRequested(job_id=job.id))
    add_log(session, job.id, SERVICE, REQUESTED_AGAIN if again else REQUESTED)
    log.info("failure notice requested", job_id=job.id, again=again)
    return True


async def lost_notice_requests(session: AsyncSession) -> list[int]:
    """Jobs whose notice was asked for and neither stored nor refused by inference: the
    last line of their log is still the request. An in-process bus loses a request with
    the process (RabbitMQ keeps it), so at start these are asked for again."""
    last_line = (
        select(JobLog.message)
        .where(JobLog.job_id == Job.id)
        .order_by(JobLog.id.desc())
        .limit(1)
        .correlate(Job)
        .scalar_subquery()
    )
    has_notice = exists().where(
        OutputObject.job_id == Job.id, OutputObject.kind.in_(FAILURE_NOTICE_KINDS)
    )
    rows = await session.scalars(
        select(Job.id)
        .where(Job.status.in_([str(s) for s in NOTICE_STATUSES]))
        .where(Job.purged_at.is_(None))
        .where(~has_notice)
        .where(last_line.startswith(REQUESTED))
        .order_by(Job.id)
    )
    return list(rows)


async def plan_notice_deliveries(session: AsyncSession, job: Job) -> list[Delivery]:
    """One delivery per enabled destination of the rule for a job whose notice is stored."""
    if not await notice_wanted(session, job) or not await _has_notice(session, job):
        return []
    rule = await _rule(session, job)
    assert rule is not None
    destinations = [d for d in rule.destinations if d.enabled]
    existing = {
        d.destination_id: d
        for d in await session.scalars(select(Delivery).where(Delivery.job_id == job.id))
    }
    created = [new_delivery(job.id, d.id) for d in destinations if d.id not in existing]
    # Restarted when the notice was requested (a re-opened job), not yet attempted.
    waiting = [
        d
        for d in existing.values()
        if d.status == DeliveryStatus.PENDING and d.attempts == 0 and d.next_attempt_at is None
    ]
    if not created and not waiting:
        return []
    session.add_all(created)
    await session.flush()
    planned = sorted([*waiting, *created], key=lambda d: d.id)
    for delivery in planned:
        enqueue(session, DeliveryRequested(delivery_id=delivery.id))
    names = ", ".join(f"{d.name} ({d.ae_title}@{d.host}:{d.port})" for d in destinations)
    add_log(session, job.id, SERVICE, f"sending the failure notice to {names}")
    return planned


async def follow_up(session: AsyncSession, job: Job) -> None:
    """For a job that ended without results: deliver its notice, or ask for one."""
    if await _has_notice(session, job):
        await plan_notice_deliveries(session, job)
    else:
        await request_notice(session, job)
