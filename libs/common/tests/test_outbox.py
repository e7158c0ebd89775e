"""Events committed with a state change are published once; rolled-back ones never."""

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest
from sqlalchemy import Table, func, select

from pulmogate.common.bus import make_bus
from pulmogate.common.db.models import OutboxMessage
from pulmogate.common.db.session import Database
from pulmogate.common.events import AnalysisRequested, Event
from pulmogate.common.outbox import OutboxRelay, enqueue


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, pg_url: str, tmp_path) -> AsyncIterator[Database]:
    from pulmogate.common.db.migrate import upgrade_async

    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'o.db'}"
        await upgrade_async(url)
    else:
        url = pg_url
    database = Database(url)
    async with database.session() as session:
        await session.execute(cast(Table, OutboxMessage.__table__).delete())
    yield database
    await database.dispose()


async def test_committed_events_are_published_and_rolled_back_ones_are_not(db: Database) -> None:
    bus = make_bus("memory://")
    seen: list[Event] = []

    async def handler(event: Event) -> None:
        seen.append(event)

    await bus.subscribe("test.outbox", [AnalysisRequested.routing_key], handler)
    relay = OutboxRelay(db, bus, poll_s=0.1)
    task = asyncio.create_task(relay.run())
    try:
        async with db.session() as session:
            enqueue(session, AnalysisRequested(job_id=1))
        with pytest.raises(RuntimeError):
            async with db.session() as session:
                enqueue(session, AnalysisRequested(job_id=2))
                raise RuntimeError("rolled back")
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    finally:
        task.cancel()
        await bus.close()
    assert [e.job_id for e in seen] == [1]  # type: ignore[attr-defined]
    async with db.session() as session:
        pending = await session.scalar(
            select(func.count()).where(OutboxMessage.published_at.is_(None))
        )
    assert pending == 0
