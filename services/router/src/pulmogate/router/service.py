"""Router service: routes arrived series to jobs, and analysed jobs to their destinations.

It also owns what happens to a job afterwards: a series that grew re-opens its job, a
series received again is noted (or re-analysed, ``identical_resend = reanalyse``), an
operator's re-analysis request re-opens it, and reconciliation picks up what a crash or a
lost message left in any intermediate state (see ``reconcile``).
"""

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

import structlog
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

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
    ReanalysisRequested,
    SeriesArrived,
    SeriesResent,
)
from pulmogate.common.joblog import add_log
from pulmogate.common.lifecycle import REOPENABLE, analysis_gone, deliver_results, queue
from pulmogate.common.outbox import enqueue
from pulmogate.common.runtime import Context
from pulmogate.router.janitor import run_janitor
from pulmogate.router.jobs import (
    SERVICE,
    can_reopen_now,
    job_of_series,
    reconsider,
    reopen_job,
    route_series,
)
from pulmogate.router.notices import (
    NOTICE_STATUSES,
    follow_up,
    lost_notice_requests,
    request_notice,
)

log = structlog.get_logger("pulmogate.router")

QUEUE = "pulmogate.router"
RECONCILE_EVERY_S = 30.0
STALE_AFTER_S = 30.0
PERIODIC_REQUEUE_AFTER_S = 300.0


class RouterService:
    """Consumes series.arrived, series.resent, job.reanalysis_requested and
    analysis.finished; reconciles on start and every 30 s."""

    name = SERVICE

    def __init__(self) -> None:
        self.ctx: Context | None = None

    async def start(self, ctx: Context) -> None:
        """Reconcile what a crash left behind, subscribe, and start the safety-net loop.

        With an in-process bus the messages of a previous process died with it: every job
        and delivery in an intermediate state is taken up at once, whatever its age.
        """
        self.ctx = ctx
        await self.reconcile(requeue_after_s=STALE_AFTER_S, orphaned=not ctx.bus.durable)
        await ctx.bus.subscribe(
            QUEUE,
            [
                SeriesArrived.routing_key,
                SeriesResent.routing_key,
                ReanalysisRequested.routing_key,
                AnalysisFinished.routing_key,
            ],
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
            await self.route(event.series_id, received_again=event.instances_received_again)
        elif isinstance(event, SeriesResent):
            await self.resent(event)
        elif isinstance(event, ReanalysisRequested):
            await self.reanalyse(event.job_id, event.requested_by)
        elif isinstance(event, AnalysisFinished):
            await self.deliver(event.job_id)

    async def route(self, series_id: int, *, received_again: int = 0) -> None:
        """Create the series' job, or tell its job what the series holds now (idempotent:
        a redelivered announcement finds the job decided on every instance already)."""
        assert self.ctx is not None
        ctx = self.ctx
        async with ctx.db.session() as session:
            job_id = await session.scalar(select(Job.id).where(Job.series_id == series_id))
            if job_id is None:
                series = await session.get(Series, series_id, with_for_update=ctx.db.lock(Series))
                if series is None:
                    log.warning("series.arrived for an unknown series", series_id=series_id)
                    return
                if await job_of_series(session, series_id) is None:
                    await route_series(session, series, ctx.settings)
                    return
            # Lock order: job, then series (as the API's delete and the sender).
            job = await self._job_of_series(session, series_id)
            assert job is not None
            series = await session.get(Series, series_id, populate_existing=True)
            assert series is not None
            outcome = await reconsider(
                session, job, series, ctx.settings, ctx.storage, received_again=received_again
            )
            log.info("series announced again", series_id=series_id, job_id=job.id, outcome=outcome)

    async def _job_of_series(self, session: AsyncSession, series_id: int) -> Job | None:
        """The series' job, its row locked (Postgres)."""
        assert self.ctx is not None
        query = select(Job).where(Job.series_id == series_id)
        if not self.ctx.db.is_sqlite:
            query = query.with_for_update(of=Job)
        return await session.scalar(query)

    async def resent(self, event: SeriesResent) -> None:
        """Note in the job log that the series came again with nothing new; re-analyse it
        when ``identical_resend`` says so and the job can be re-opened now."""
        assert self.ctx is not None
        ctx = self.ctx
        async with ctx.db.session() as session:
            job = await self._job_of_series(session, event.series_id)
            if job is None:
                log.info("series received again before it has a job", series_id=event.series_id)
                return
            said = f"series received again: {event.instances} instances, all already stored"
            reanalyse = ctx.settings.identical_resend == "reanalyse"
            if not reanalyse or job.purged_at is not None:
                how = f"; POST /api/v1/jobs/{job.id}/reanalyse analyses it again"
                add_log(session, job.id, SERVICE, f"{said}; no new analysis{how}")
                return
            if not await can_reopen_now(session, job) or job.status == JobStatus.ANALYSING:
                add_log(
                    session, job.id, SERVICE, f"{said}; the job is {job.status}: no new analysis"
                )
                return
            series = await session.get(Series, event.series_id)
            assert series is not None
            await reopen_job(
                session,
                job,
                series,
                ctx.settings,
                ctx.storage,
                reason="resent",
                intro=f"{said}: checked and analysed again (identical_resend = reanalyse)",
            )

    async def reanalyse(self, job_id: int, requested_by: str) -> None:
        """An operator's request: re-open the job, unless it is queued or being worked on."""
        assert self.ctx is not None
        ctx = self.ctx
        async with ctx.db.session() as session:
            job = await session.get(Job, job_id, with_for_update=ctx.db.lock(Job))
            if job is None:
                log.warning("re-analysis requested for an unknown job", job_id=job_id)
                return
            if job.purged_at is not None or not await can_reopen_now(session, job):
                add_log(
                    session,
                    job.id,
                    SERVICE,
                    f"re-analysis requested by {requested_by} not done: the job is {job.status}",
                    level="warning",
                )
                return
            series = await session.get(Series, job.series_id)
            assert series is not None
            await reopen_job(
                session,
                job,
                series,
                ctx.settings,
                ctx.storage,
                reason="requested",
                intro=f"re-analysis requested by {requested_by}: checked and analysed again",
            )

    async def deliver(self, job_id: int) -> None:
        """Plan deliveries for an analysed job (idempotent: only ANALYSED jobs move), or the
        failure notice of a job that ended without results (``notices``); a job whose series
        grew while it was analysed is re-opened instead."""
        assert self.ctx is not None
        ctx = self.ctx
        async with ctx.db.session() as session:
            job = await session.get(Job, job_id, with_for_update=ctx.db.lock(Job))
            if job is None:
                log.warning("analysis.finished for an unknown job", job_id=job_id)
                return
            series = await session.get(Series, job.series_id)
            if (
                series is not None
                and series.status != SeriesStatus.RECEIVING
                and series.instance_count > (job.analysed_instance_count or 0)
                and job.status in REOPENABLE
            ):
                await reconsider(session, job, series, ctx.settings, ctx.storage)
                return
            if job.status in NOTICE_STATUSES:  # no results: its failure notice, if wanted
                await follow_up(session, job)
                return
            if job.status != JobStatus.ANALYSED:
                log.info("nothing to deliver", job_id=job_id, status=job.status)
                return
            await deliver_results(session, job, SERVICE)

    async def reconcile(self, *, requeue_after_s: float, orphaned: bool = False) -> None:
        """Pick up work a lost message or a crash left behind (docs/reliability.md).

        Each round: complete series without a job are routed; jobs whose series holds more
        instances than they were decided on are reconsidered; ANALYSED jobs are delivered;
        ANALYSING jobs whose process is gone are queued again; QUEUED jobs and due
        deliveries are announced again. ``orphaned``: nothing is in flight (an in-process
        bus at start), so no age is waited for, and failure notices asked for but never
        built are asked for again.
        """
        assert self.ctx is not None
        ctx = self.ctx
        now = utcnow()
        stale = now if orphaned else now - timedelta(seconds=STALE_AFTER_S)
        async with ctx.db.session() as session:
            unrouted = list(
                await session.scalars(
                    select(Series.id)
                    .where(Series.status == SeriesStatus.COMPLETE)
                    .where(~exists().where(Job.series_id == Series.id))
                    .order_by(Series.id)
                )
            )
            grown = list(
                await session.scalars(
                    select(Job.series_id)
                    .join(Series, Series.id == Job.series_id)
                    .where(Series.status.in_([SeriesStatus.COMPLETE, SeriesStatus.ROUTED]))
                    .where(Series.instance_count > Job.analysed_instance_count)
                    .where(Job.status.in_([str(s) for s in REOPENABLE]))
                    .where(Job.purged_at.is_(None))
                    .order_by(Job.id)
                )
            )
            analysed = list(
                await session.scalars(
                    select(Job.id)
                    .where(Job.status == JobStatus.ANALYSED)
                    .where(Job.updated_at <= stale)
                )
            )
            analysing = (
                await session.scalars(select(Job).where(Job.status == JobStatus.ANALYSING))
            ).all()
            left = [j.id for j in analysing if orphaned or analysis_gone(j, now)]
            lost_notices = await lost_notice_requests(session) if orphaned else []
        for series_id in unrouted:
            await self._safely(self.route(series_id), "route", series_id)
        for series_id in grown:
            await self._safely(self.route(series_id), "reconsider", series_id)
        for job_id in analysed:
            await self._safely(self.deliver(job_id), "deliver", job_id)
        requeued = 0
        for job_id in left:
            requeued += await self._requeue_interrupted(job_id, orphaned=orphaned)
        for job_id in lost_notices:
            await self._safely(self._request_notice_again(job_id), "notice", job_id)
        async with ctx.db.session() as session:
            queued = (
                await session.scalars(
                    select(Job)
                    .where(Job.status == JobStatus.QUEUED)
                    .where(
                        Job.updated_at
                        <= (now if orphaned else now - timedelta(seconds=requeue_after_s))
                    )
                )
            ).all()
            for job in queued:
                job.updated_at = now
                add_log(session, job.id, SERVICE, "re-queued for analysis (no progress)")
                enqueue(session, AnalysisRequested(job_id=job.id))
            due = (
                await session.scalars(
                    select(Delivery)
                    .join(Job, Job.id == Delivery.job_id)
                    # Results of a DELIVERING job, or the failure notice of a job without them.
                    .where(Job.status.in_([JobStatus.DELIVERING, *NOTICE_STATUSES]))
                    .where(Delivery.status.in_([DeliveryStatus.PENDING, DeliveryStatus.RETRYING]))
                    .where(Delivery.updated_at <= stale)
                )
            ).all()
            deliveries = 0
            for delivery in due:
                wait_s = 0.0
                if delivery.next_attempt_at is not None:
                    wait_s = (delivery.next_attempt_at - now).total_seconds()
                    if wait_s > 0 and not orphaned:
                        continue  # its delayed message is still on its way
                delivery.updated_at = now
                enqueue(session, DeliveryRequested(delivery_id=delivery.id), delay_s=max(wait_s, 0))
                deliveries += 1
        if unrouted or grown or analysed or requeued or lost_notices or queued or deliveries:
            log.info(
                "reconciled",
                routed=len(unrouted),
                reconsidered=len(grown),
                deliveries_planned=len(analysed),
                interrupted_analyses=requeued,
                notices_requested_again=len(lost_notices),
                analysis_requeued=len(queued),
                deliveries_requeued=deliveries,
            )

    async def _requeue_interrupted(self, job_id: int, *, orphaned: bool) -> int:
        """Queue an ANALYSING job again whose analysing process is gone (1 if it was)."""
        assert self.ctx is not None
        ctx = self.ctx
        async with ctx.db.session() as session:
            job = await session.get(Job, job_id, with_for_update=ctx.db.lock(Job))
            if job is None or job.status != JobStatus.ANALYSING:
                return 0
            if not orphaned and not analysis_gone(job):
                return 0  # taken over meanwhile
            who = f" ({job.worker})" if job.worker else ""
            add_log(
                session,
                job.id,
                SERVICE,
                f"analysis interrupted: the process analysing it{who} is gone; queued again",
                level="warning",
            )
            queue(job)
            enqueue(session, AnalysisRequested(job_id=job.id))
        log.info("interrupted analysis queued again", job_id=job_id)
        return 1

    async def _request_notice_again(self, job_id: int) -> None:
        """Ask again for a failure notice whose request was lost (``lost_notice_requests``)."""
        assert self.ctx is not None
        ctx = self.ctx
        async with ctx.db.session() as session:
            job = await session.get(Job, job_id, with_for_update=ctx.db.lock(Job))
            if job is not None:
                await request_notice(session, job, again=True)

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
