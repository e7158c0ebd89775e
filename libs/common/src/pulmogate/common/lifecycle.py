"""The job and delivery lifecycle: every status a job or a delivery takes is set here.

Each service calls these transitions (router: decide, queue, deliver; inference: analyse;
sender: send, retry, give up, finish the job; api: resend) inside its own transaction;
no other module assigns ``Job.status`` or ``Delivery.status``.

One rule for the figures: ``finished_at`` is set, and ``pulmogate_jobs_finished_total``
counted, when a job becomes final from an open round (routing, analysis, its first
delivery). A resend of the results keeps both: the job is final once per analysis
outcome, not once per delivery. A re-opened job (more instances, a re-analysis) starts a
new round: ``finished_at`` is cleared and the next final state counts again.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import (
    FAILURE_NOTICE_KINDS,
    FINAL_JOB_STATUSES,
    NO_RESULT_STATUSES,
    Delivery,
    DeliveryStatus,
    Destination,
    Job,
    JobStatus,
    OutputObject,
    RoutingRule,
    utcnow,
)
from pulmogate.common.events import DeliveryRequested
from pulmogate.common.joblog import add_log
from pulmogate.common.metrics import JOBS_FINISHED, JOBS_REOPENED
from pulmogate.common.outbox import enqueue
from pulmogate.common.workers import worker_gone

# Re-opening a job reads its instances again: only these states may be re-opened at once.
# QUEUED reads every instance when its analysis starts; ANALYSING and a delivery being
# sent are waited for.
REOPENABLE = FINAL_JOB_STATUSES | {JobStatus.ANALYSED, JobStatus.DELIVERING}
FINAL_DELIVERY_STATUSES = frozenset({DeliveryStatus.DELIVERED, DeliveryStatus.FAILED})


# --- jobs ---------------------------------------------------------------------------------


def mark_final(
    job: Job, status: JobStatus, *, code: str | None = None, reason: str | None = None
) -> None:
    """Put ``job`` in a final state; the first time in this round, stamp and count it."""
    job.status = status
    if code is not None or reason is not None:
        job.reason_code = code
        job.reason = reason
    job.worker = None
    if job.finished_at is None:
        job.finished_at = utcnow()
        JOBS_FINISHED.labels(status=status).inc()


def reopen(job: Job, reason: str) -> None:
    """Start a new round: clear the verdict and the figures of the previous one."""
    job.finished_at = None
    job.reason_code = job.reason = None
    job.prediction = None
    job.grade = None
    job.percent = None
    job.figures = {}
    job.worker = None
    JOBS_REOPENED.labels(reason=reason).inc()


def queue(job: Job) -> None:
    """QUEUED for analysis (routed, or taken back from a process that is gone)."""
    job.status = JobStatus.QUEUED
    job.worker = None


def start_analysis(job: Job, worker: str) -> None:
    """ANALYSING by ``worker`` from now (one attempt more)."""
    job.status = JobStatus.ANALYSING
    job.worker = worker
    job.analysis_started_at = job.worker_seen_at = utcnow()
    job.attempts += 1


@dataclass(frozen=True)
class Verdict:
    """What an analysis found, as the job records it."""

    prediction: str
    grade: int
    percent: float
    figures: dict[str, Any]
    timings: dict[str, float]
    model_name: str
    model_version: str


def record_analysis(job: Job, verdict: Verdict) -> None:
    """ANALYSED with its figures (the router plans the deliveries next)."""
    job.status = JobStatus.ANALYSED
    job.worker = None
    job.prediction = verdict.prediction
    job.grade = verdict.grade
    job.percent = verdict.percent
    job.figures = verdict.figures
    job.timings = verdict.timings
    job.model_name = verdict.model_name
    job.model_version = verdict.model_version
    job.analysis_finished_at = utcnow()


def end_analysis(job: Job, status: JobStatus, *, code: str, reason: str) -> None:
    """An analysis that produced no results: REJECTED or FAILED, with the reason."""
    mark_final(job, status, code=code, reason=reason)
    job.analysis_finished_at = utcnow()


def analysis_gone(job: Job, now: datetime | None = None) -> bool:
    """An ANALYSING job whose worker no longer runs (a crash left it behind)."""
    if job.status != JobStatus.ANALYSING:
        return False
    seen = job.worker_seen_at or job.analysis_started_at or job.updated_at
    return worker_gone(job.worker, seen, now or utcnow())


def may_send(status: str, output_kinds: Iterable[str]) -> bool:
    """Whether a job's deliveries may be sent now: its results while it is DELIVERING, or
    the failure notice of a job that ended without results (it keeps its final status)."""
    if status == JobStatus.DELIVERING:
        return True
    kinds = set(output_kinds)
    return status in NO_RESULT_STATUSES and bool(kinds) and kinds <= set(FAILURE_NOTICE_KINDS)


# --- deliveries ---------------------------------------------------------------------------


def new_delivery(job_id: int, destination_id: int) -> Delivery:
    """A PENDING delivery of a job's outputs to one destination (the caller adds it)."""
    return Delivery(job_id=job_id, destination_id=destination_id, status=DeliveryStatus.PENDING)


def restart_delivery(delivery: Delivery) -> None:
    """Back to PENDING at attempt 0, as if never tried."""
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.last_error = None
    delivery.next_attempt_at = None
    delivery.delivered_at = None


def start_sending(delivery: Delivery) -> int:
    """SENDING now; returns the attempt's number."""
    delivery.status = DeliveryStatus.SENDING
    delivery.attempts += 1
    delivery.next_attempt_at = None
    return delivery.attempts


def send_again(delivery: Delivery) -> None:
    """An attempt cut short (a crash mid-association): PENDING, to be announced again."""
    delivery.status = DeliveryStatus.PENDING


def delivered(delivery: Delivery) -> None:
    """Every object accepted by the destination."""
    delivery.status = DeliveryStatus.DELIVERED
    delivery.delivered_at = utcnow()
    delivery.last_error = None


def retry_later(delivery: Delivery, error: str | None, delay_s: float) -> None:
    """RETRYING after ``delay_s`` (the caller announces it with that delay)."""
    delivery.status = DeliveryStatus.RETRYING
    delivery.last_error = error
    delivery.next_attempt_at = utcnow() + timedelta(seconds=delay_s)


def give_up(delivery: Delivery, reason: str) -> None:
    """FAILED for good, with the reason."""
    delivery.status = DeliveryStatus.FAILED
    delivery.last_error = reason
    delivery.next_attempt_at = None


async def rule_destinations(
    session: AsyncSession, job: Job
) -> tuple[RoutingRule | None, list[Destination]]:
    """The job's rule (None once deleted) and its enabled destinations, in the rule's order."""
    rule = await session.get(RoutingRule, job.rule_id) if job.rule_id is not None else None
    return rule, [d for d in (rule.destinations if rule else []) if d.enabled]


async def plan_deliveries(
    session: AsyncSession,
    job: Job,
    destinations: Sequence[Destination],
    *,
    every_existing: bool = False,
) -> list[Delivery]:
    """One delivery per destination, restarted (PENDING at attempt 0) and announced.

    A destination that has a delivery already (an earlier analysis, an earlier send) gets
    it back; the others get a new one. ``every_existing`` restarts the job's other
    deliveries too (a resend sends again wherever it was sent), in the order they were
    made. Nothing is changed when there is nothing to plan.
    """
    existing = {
        d.destination_id: d
        for d in await session.scalars(select(Delivery).where(Delivery.job_id == job.id))
    }
    planned: list[Delivery] = []
    for destination in destinations:
        delivery = existing.pop(destination.id, None)
        if delivery is None:
            delivery = new_delivery(job.id, destination.id)
            session.add(delivery)
        planned.append(delivery)
    if every_existing:
        planned.extend(existing.values())
    if not planned:
        return []
    await session.flush()
    if every_existing:
        planned.sort(key=lambda d: d.id)
    for delivery in planned:
        restart_delivery(delivery)
        enqueue(session, DeliveryRequested(delivery_id=delivery.id))
    return planned


async def deliver_results(session: AsyncSession, job: Job, service: str) -> list[Delivery]:
    """For an ANALYSED job: one PENDING delivery per enabled destination of its rule.

    Each is announced with DeliveryRequested and the job moves to DELIVERING; without
    destinations the job is DONE. Jobs in any other state are left alone.
    """
    if job.status != JobStatus.ANALYSED:
        return []
    rule, destinations = await rule_destinations(session, job)
    if not destinations:
        mark_final(job, JobStatus.DONE)
        note = "no destinations configured" + ("" if rule else " (the rule was deleted)")
        add_log(session, job.id, service, f"{note}; job done")
        return []
    planned = await plan_deliveries(session, job, destinations)
    job.status = JobStatus.DELIVERING
    names = ", ".join(f"{d.name} ({d.ae_title}@{d.host}:{d.port})" for d in destinations)
    add_log(session, job.id, service, f"delivering results to {names}")
    return planned


async def plan_resend(session: AsyncSession, job: Job) -> list[Delivery]:
    """Send the job's outputs again: every delivery it had, and one to each enabled
    destination its rule has gained since, from attempt 0 (``plan_deliveries``).

    Results make the job DELIVERING until the sender finishes it (``finished_at`` stays
    that of the first delivery); a failure notice sent again keeps the job's outcome.
    Returns the deliveries, none (and nothing changed) when there is nowhere to send.
    """
    _, destinations = await rule_destinations(session, job)
    planned = await plan_deliveries(session, job, destinations, every_existing=True)
    if not planned:
        return []
    kinds = await session.scalars(select(OutputObject.kind).where(OutputObject.job_id == job.id))
    if any(kind not in FAILURE_NOTICE_KINDS for kind in kinds):
        job.status = JobStatus.DELIVERING
    job.resend_count += 1
    job.resent_at = utcnow()
    return planned


async def finish_when_delivered(session: AsyncSession, job: Job, service: str) -> None:
    """A DELIVERING job whose deliveries are all final: DONE when every one was delivered,
    FAILED (with each failure) when any failed. Otherwise nothing.

    The caller holds the job row lock (Postgres), so two deliveries finishing at once
    cannot both see the other one still open.
    """
    if job.status != JobStatus.DELIVERING:
        return
    await session.flush()
    rows = (
        await session.execute(
            select(Delivery.status, Destination.name, Delivery.last_error)
            .join(Destination, Destination.id == Delivery.destination_id)
            .where(Delivery.job_id == job.id)
            .order_by(Delivery.id)
        )
    ).all()
    if any(status not in FINAL_DELIVERY_STATUSES for status, _, _ in rows):
        return
    failed = [(name, error) for status, name, error in rows if status == DeliveryStatus.FAILED]
    # mark_final: a job final before (a resend) keeps its finished_at and is not counted.
    if failed:
        reason = "; ".join(f"delivery to {name} failed: {error}" for name, error in failed)
        mark_final(job, JobStatus.FAILED, reason=reason)
        add_log(session, job.id, service, reason, level="error")
    else:
        job.reason = job.reason_code = None
        mark_final(job, JobStatus.DONE)
        add_log(session, job.id, service, f"delivered to all {len(rows)} destination(s)")
