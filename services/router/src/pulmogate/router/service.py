"""Router service: routes arrived series to jobs, and analysed jobs to their destinations."""

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

import structlog
from sqlalchemy import exists, select

from pulmogate.common.db.models import (
    Delivery,
    DeliveryStatus,
    Job,
    JobStatus,
    Series,
    SeriesStatus,
    utcnow,
)
from pulmogate.common.events import (
    AnalysisFinished,
    AnalysisRequested,
    DeliveryRequested,
    Event,
    SeriesArrived,
)
from pulmogate.common.joblog import add_log
from pulmogate.common.outbox import enqueue
from pulmogate.common.runtime import Context
from pulmogate.router.janitor import run_janitor
from pulmogate.router.jobs import SERVICE, job_of_series, plan_deliveries, route_series
from pulmogate.router.notices import NOTICE_STATUSES, follow_up

log = structlog.get_logger("pulmogate.router")

QUEUE = "pulmogate.router"
RECONCILE_EVERY_S = 30.0
STALE_AFTER_S = 30.0
PERIODIC_REQUEUE_AFTER_S = 300.0


class RouterService:
    """Consumes series.arrived and analysis.finished; reconciles on start and every 30 s."""

    name = SERVICE

    def __init__(self) -> None:
        self.ctx: Context | None = None

    async def start(self, ctx: Context) -> None:
        """Reconcile what a crash left behind, subscribe, and start the safety-net loop."""
        self.ctx = ctx
        await self.reconcile(requeue_after_s=STALE_AFTER_S)
        await ctx.bus.subscribe(
            QUEUE,
            [SeriesArrived.routing_key, AnalysisFinished.routing_key],
            self.on_event,
            prefetch=4,
        )
        ctx.spawn(self._reconcile_loop(), "router-reconcile")
        ctx.spawn(run_janitor(ctx), "router-janitor")

    async def stop(self) -> None:
        """Nothing to release: the loop is a context task, unacked messages return."""

    async def on_event(self, event: Event) -> None:
        """Dispatch one message; returns once its effect is committed."""
        if isinstance(event, SeriesArrived):
            await self.route(event.series_id)
        elif isinstance(event, AnalysisFinished):
            await self.deliver(event.job_id)

    async def route(self, series_id: int) -> None:
        """Create the series' job (idempotent: a series that already has a job is left alone)."""
        assert self.ctx is not None
        ctx = self.ctx
        async with ctx.db.session() as session:
            series = await session.get(Series, series_id, with_for_update=ctx.db.lock(Series))
            if series is None:
                log.warning("series.arrived for an unknown series", series_id=series_id)
                return
            if await job_of_series(session, series_id) is not None:
                log.info("series already has a job, ignoring redelivery", series_id=series_id)
                return
            await route_series(session, series, ctx.settings)

    async def deliver(self, job_id: int) -> None:
        """Plan deliveries for an analysed job (idempotent: only ANALYSED jobs move), or the
        failure notice of a job that ended without results (``notices``)."""
        assert self.ctx is not None
        ctx = self.ctx
        async with ctx.db.session() as session:
            job = await session.get(Job, job_id, with_for_update=ctx.db.lock(Job))
            if job is None:
                log.warning("analysis.finished for an unknown job", job_id=job_id)
                return
            if job.status in NOTICE_STATUSES:  # no results: its failure notice, if wanted
                await follow_up(session, job)
                return
            if job.status != JobStatus.ANALYSED:
                log.info("nothing to deliver", job_id=job_id, status=job.status)
                return
            await plan_deliveries(session, job)

    async def reconcile(self, *, requeue_after_s: float) -> None:
        """Pick up work a lost message or a crash left behind (see README: reconciliation)."""
        assert self.ctx is not None
        ctx = self.ctx
        now = utcnow()
        stale = now - timedelta(seconds=STALE_AFTER_S)
        async with ctx.db.session() as session:
            unrouted = list(
                await session.scalars(
                    select(Series.id)
                    .where(Series.status == SeriesStatus.COMPLETE)
                    .where(~exists().where(Job.series_id == Series.id))
                    .order_by(Series.id)
                )
            )
            analysed = list(
                await session.scalars(
                    select(Job.id)
                    .where(Job.status == JobStatus.ANALYSED)
                    .where(Job.updated_at < stale)
                    .where(~exists().where(Delivery.job_id == Job.id))
                )
            )
        for series_id in unrouted:
            await self._safely(self.route(series_id), "route", series_id)
        for job_id in analysed:
            await self._safely(self.deliver(job_id), "deliver", job_id)
        async with ctx.db.session() as session:
            queued = (
                await session.scalars(
                    select(Job)
                    .where(Job.status == JobStatus.QUEUED)
                    .where(Job.updated_at < now - timedelta(seconds=requeue_after_s))
                )
            ).all()
            for job in queued:
                job.updated_at = now
                add_log(session, job.id, SERVICE, "re-queued for analysis (no progress)")
                enqueue(session, AnalysisRequested(job_id=job.id))
            due = (
                await session.scalars(
                    select(Delivery)
                    .where(Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.RETRYING]))
                    .where(Delivery.updated_at < stale)
                )
            ).all()
            requeued = 0
            for delivery in due:
                if delivery.next_attempt_at is not None and delivery.next_attempt_at > stale:
                    continue
                delivery.updated_at = now
                enqueue(session, DeliveryRequested(delivery_id=delivery.id))
                requeued += 1
        if unrouted or analysed or queued or requeued:
            log.info(
                "reconciled",
                routed=len(unrouted),
                deliveries_planned=len(analysed),
                analysis_requeued=len(queued),
                deliveries_requeued=requeued,
            )

    async def _safely(self, work: Awaitable[None], what: str, ident: int) -> None:
        """One reconcile step; a failure is logged and the next step still runs."""
        try:
            await work
        except Exception:
            log.exception("reconcile step failed", step=what, id=ident)

    async def _reconcile_loop(self) -> None:
        """Safety net: reconcile every 30 s (stuck QUEUED jobs after 5 min, not to flood)."""
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            try:
                await self.reconcile(requeue_after_s=PERIODIC_REQUEUE_AFTER_S)
            except Exception:
                log.exception("periodic reconcile failed")
