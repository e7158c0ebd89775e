"""Sender service: C-STORE each delivery's outputs, retry with backoff, finish the job."""

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from pathlib import Path

import structlog
from pydicom.uid import DeflatedExplicitVRLittleEndian
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pulmogate.common.db.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    Job,
    OutputObject,
    utcnow,
)
from pulmogate.common.dicom.encoding import ImageEncoding
from pulmogate.common.events import DeliveryRequested, Event
from pulmogate.common.joblog import add_log
from pulmogate.common.lifecycle import (
    FINAL_DELIVERY_STATUSES,
    delivered,
    finish_when_delivered,
    give_up,
    may_send,
    retry_later,
    send_again,
    start_sending,
)
from pulmogate.common.metrics import DELIVERIES
from pulmogate.common.outbox import enqueue
from pulmogate.common.runtime import Context
from pulmogate.sender.backoff import backoff_delay
from pulmogate.sender.dispatch import DispatchOutcome, Peer, StoredResult, dispatch

log = structlog.get_logger("pulmogate.sender")

QUEUE = "pulmogate.sender"
SERVICE = "sender"
PREFETCH = 4
FINAL = FINAL_DELIVERY_STATUSES
STALE_SENDING_S = 300.0
RECONCILE_EVERY_S = 60.0
STOP_WAIT_S = 10.0


def sent_as(outcome: DispatchOutcome) -> str:
    """The transfer syntaxes an attempt used, most objects first (for the job log)."""
    counts = sorted(outcome.syntaxes.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{n} {name}" for name, n in counts) or "nothing"


def encoding_notes(peer: Peer, outcome: DispatchOutcome) -> list[tuple[str, str]]:
    """Job-log lines on what an attempt had to encode or decode for the destination."""
    notes: list[tuple[str, str]] = []
    if outcome.transcoded:
        notes.append(
            (
                f"encoded {outcome.transcoded} pictures as {peer.image_encoding} for "
                f"{peer.name} (stored for later sends)",
                "info",
            )
        )
    for syntax in outcome.refused:
        if syntax == DeflatedExplicitVRLittleEndian.name:
            notes.append(
                (f"{peer.name} did not accept {syntax}: the SEG went uncompressed", "info")
            )
        else:
            notes.append(
                (
                    f"{peer.name} did not accept {syntax}: pictures sent uncompressed instead "
                    f"({outcome.decoded} decoded here, on every send); set the destination's "
                    "image_encoding to one it accepts",
                    "warning",
                )
            )
    return notes


class SenderService:
    """Consumes delivery.requested; one association per delivery attempt."""

    name = SERVICE

    def __init__(self) -> None:
        self.ctx: Context | None = None
        self._sending: set[int] = set()
        self._attempts: set[asyncio.Task[None]] = set()

    async def start(self, ctx: Context) -> None:
        """Re-announce deliveries a crash left in SENDING, subscribe, start the safety net."""
        self.ctx = ctx
        await self.reconcile(sending_older_than_s=0.0)
        await ctx.bus.subscribe(
            QUEUE, [DeliveryRequested.routing_key], self.on_event, prefetch=PREFETCH
        )
        ctx.spawn(self._reconcile_loop(), "sender-reconcile")

    async def stop(self) -> None:
        """Give associations in progress up to ``STOP_WAIT_S`` to finish and be recorded
        (unacked messages return to the queue; one cut short is sent again at start)."""
        if self._attempts:
            await asyncio.wait(set(self._attempts), timeout=STOP_WAIT_S)

    async def on_event(self, event: Event) -> None:
        """Attempt one delivery (idempotent: final deliveries are acked untouched)."""
        assert isinstance(event, DeliveryRequested)
        delivery_id = event.delivery_id
        if delivery_id in self._sending:
            log.info("delivery already being sent here, ignoring duplicate", id=delivery_id)
            return
        self._sending.add(delivery_id)
        attempt = asyncio.create_task(self._attempt(delivery_id))
        self._attempts.add(attempt)
        attempt.add_done_callback(lambda _t: self._sending.discard(delivery_id))
        attempt.add_done_callback(self._attempts.discard)
        # A consumer cancelled by a lost broker connection must not stop a running
        # association: the redelivered message would start a second, concurrent one.
        await asyncio.shield(attempt)

    async def _attempt(self, delivery_id: int) -> None:
        assert self.ctx is not None
        ctx = self.ctx
        async with ctx.db.session() as session:
            job_id = await session.scalar(select(Delivery.job_id).where(Delivery.id == delivery_id))
            if job_id is None:
                log.warning("delivery.requested for an unknown delivery", id=delivery_id)
                return
            # Lock order: job, then delivery.
            job = await session.get(Job, job_id, with_for_update=ctx.db.lock(Job))
            delivery = await session.get(
                Delivery, delivery_id, with_for_update=ctx.db.lock(Delivery)
            )
            if delivery is None or job is None:
                return
            if delivery.status in FINAL:
                log.info("delivery already final", id=delivery_id, status=delivery.status)
                return
            destination = await session.get(Destination, delivery.destination_id)
            assert destination is not None
            peer = Peer(
                destination.name,
                destination.host,
                destination.port,
                destination.ae_title,
                ImageEncoding(destination.image_encoding),
            )
            results = [
                StoredResult(row.job_id, row.kind, row.sop_instance_uid, Path(row.path))
                for row in await session.execute(
                    select(
                        OutputObject.job_id,
                        OutputObject.kind,
                        OutputObject.sop_instance_uid,
                        OutputObject.path,
                    )
                    .where(OutputObject.job_id == delivery.job_id)
                    .order_by(OutputObject.id)
                )
            ]
            if not may_send(job.status, (result.kind for result in results)):
                # Re-opened (more instances, a re-analysis): the router announces the
                # delivery again with the new results (or the new failure notice).
                log.info("job not delivering, delivery waits", id=delivery_id, status=job.status)
                return
            if not destination.enabled or not results:
                reason = (
                    f"destination {destination.name} is disabled"
                    if not destination.enabled
                    else "the job has no output objects to send"
                )
                await self._fail(session, delivery, peer, reason)
                return
            attempt = start_sending(delivery)
        log.info("sending", id=delivery_id, objects=len(results), peer=str(peer), attempt=attempt)
        outcome = await dispatch(
            results,
            peer,
            storage=ctx.storage,
            calling_aet=ctx.settings.scu_ae_title,
            timeout_s=ctx.settings.delivery_timeout_s,
        )
        await self._record(delivery_id, peer, outcome)

    async def _record(self, delivery_id: int, peer: Peer, outcome: DispatchOutcome) -> None:
        """Store the attempt's outcome; schedule a retry or finish the delivery (and the job)."""
        assert self.ctx is not None
        ctx = self.ctx
        settings = ctx.settings
        async with ctx.db.session() as session:
            job_id = await session.scalar(select(Delivery.job_id).where(Delivery.id == delivery_id))
            if job_id is None:
                return
            await session.get(Job, job_id, with_for_update=ctx.db.lock(Job))
            delivery = await session.get(
                Delivery,
                delivery_id,
                with_for_update=ctx.db.lock(Delivery),
                populate_existing=True,
            )
            assert delivery is not None
            if delivery.status in FINAL:
                return
            for line, level in encoding_notes(peer, outcome):
                add_log(session, job_id, SERVICE, line, level=level)
            if outcome.ok:
                delivered(delivery)
                add_log(
                    session,
                    job_id,
                    SERVICE,
                    f"delivered {outcome.sent} objects to {peer}: {sent_as(outcome)}",
                )
                DELIVERIES.labels(outcome="delivered").inc()
                log.info("delivered", id=delivery_id, objects=outcome.sent, peer=str(peer))
            elif delivery.attempts < settings.delivery_max_attempts:
                delay = backoff_delay(
                    delivery.attempts,
                    settings.delivery_backoff_initial_s,
                    settings.delivery_backoff_max_s,
                )
                retry_later(delivery, outcome.error, delay)
                add_log(
                    session,
                    job_id,
                    SERVICE,
                    f"delivery to {peer} failed (attempt {delivery.attempts} of "
                    f"{settings.delivery_max_attempts}): {outcome.error}; retrying in {delay:g} s",
                    level="warning",
                )
                enqueue(session, DeliveryRequested(delivery_id=delivery_id), delay_s=delay)
                DELIVERIES.labels(outcome="retrying").inc()
                log.warning("delivery failed, will retry", id=delivery_id, delay_s=delay)
                return
            else:
                await self._fail(session, delivery, peer, outcome.error or "unknown error")
                return
            await self._finish_job(session, job_id)

    async def _fail(
        self, session: AsyncSession, delivery: Delivery, peer: Peer, reason: str
    ) -> None:
        """Give up on a delivery, with the reason, and finish the job if it was the last one."""
        give_up(delivery, reason)
        add_log(
            session,
            delivery.job_id,
            SERVICE,
            f"delivery to {peer} failed after {delivery.attempts} attempt(s): {reason}",
            level="error",
        )
        DELIVERIES.labels(outcome="failed").inc()
        log.error("delivery failed", id=delivery.id, attempts=delivery.attempts)
        await self._finish_job(session, delivery.job_id)

    async def _finish_job(self, session: AsyncSession, job_id: int) -> None:
        """Finish the job once all its deliveries are final (``finish_when_delivered``)."""
        assert self.ctx is not None
        await session.flush()
        job = await session.get(Job, job_id, with_for_update=self.ctx.db.lock(Job))
        if job is not None:
            await finish_when_delivered(session, job, SERVICE)

    async def reconcile(self, *, sending_older_than_s: float) -> None:
        """Re-announce deliveries left in SENDING (a crash mid-association); outputs' UIDs are
        deterministic, so a PACS that got part of them keeps one copy."""
        assert self.ctx is not None
        cutoff = utcnow() - timedelta(seconds=sending_older_than_s)
        async with self.ctx.db.session() as session:
            stuck = (
                await session.scalars(
                    select(Delivery)
                    .where(Delivery.status == DeliveryStatus.SENDING)
                    .where(Delivery.updated_at <= cutoff)
                )
            ).all()
            for delivery in stuck:
                if delivery.id in self._sending:
                    continue
                send_again(delivery)
                add_log(
                    session,
                    delivery.job_id,
                    SERVICE,
                    "delivery interrupted while sending; sending again",
                    level="warning",
                )
                enqueue(session, DeliveryRequested(delivery_id=delivery.id))
        if stuck:
            log.info("re-announced interrupted deliveries", count=len(stuck))

    async def _reconcile_loop(self) -> None:
        """Safety net for a replica that died mid-send while this one keeps running."""
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            await self._safely(self.reconcile(sending_older_than_s=STALE_SENDING_S))

    async def _safely(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            log.exception("sender reconcile failed")
