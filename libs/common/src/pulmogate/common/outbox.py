"""Transactional outbox: events are rows committed with the state change, then published."""

import asyncio
import contextlib
import weakref

import structlog
from sqlalchemy import event as sa_event
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from pulmogate.common.bus import Bus
from pulmogate.common.db.models import OutboxMessage, utcnow
from pulmogate.common.db.session import Database
from pulmogate.common.events import Event

log = structlog.get_logger("pulmogate.outbox")

_relays: "weakref.WeakSet[OutboxRelay]" = weakref.WeakSet()


def enqueue(session: AsyncSession, event: Event, *, delay_s: float = 0.0) -> None:
    """Stage ``event`` in the same transaction as the change that caused it."""
    session.add(
        OutboxMessage(
            routing_key=event.routing_key, payload=event.model_dump_json(), delay_s=delay_s
        )
    )
    session.info["outbox_dirty"] = True


@sa_event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    if session.info.pop("outbox_dirty", False):
        for relay in list(_relays):
            relay.wake()


class OutboxRelay:
    """Publishes committed outbox rows in order; wakes on commit, polls as a fallback."""

    def __init__(self, db: Database, bus: Bus, *, poll_s: float = 1.0, batch: int = 100) -> None:
        self.db = db
        self.bus = bus
        self.poll_s = poll_s
        self.batch = batch
        self._wakeup = asyncio.Event()
        _relays.add(self)

    def wake(self) -> None:
        """Ask for a publishing round now."""
        self._wakeup.set()

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many went out."""
        async with self.db.session() as session:
            query = (
                select(OutboxMessage)
                .where(OutboxMessage.published_at.is_(None))
                .order_by(OutboxMessage.id)
                .limit(self.batch)
            )
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            rows = (await session.scalars(query)).all()
            for row in rows:
                await self.bus.publish_raw(
                    row.routing_key, row.payload.encode(), delay_s=row.delay_s
                )
                row.published_at = utcnow()
            return len(rows)

    async def run(self) -> None:
        """Relay until cancelled."""
        while True:
            try:
                while await self.publish_pending() == self.batch:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox publish failed, will retry", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.poll_s)
            self._wakeup.clear()
