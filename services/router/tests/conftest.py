"""A running router on real backends: SQLite + in-process bus, and Postgres + RabbitMQ."""

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pulmogate.common.db.models import Instance, Series, SeriesStatus
from pulmogate.common.events import AnalysisRequested, DeliveryRequested, Event
from pulmogate.common.outbox import OutboxRelay
from pulmogate.common.runtime import Context
from pulmogate.common.settings import Settings
from pulmogate.router.service import RouterService
from tests.fixtures.harness import BACKENDS, backend_settings, clean_context
from tests.fixtures.infra import eventually


@dataclass
class RouterHarness:
    """The router, its context, and the events it published (seen by a test queue)."""

    ctx: Context
    service: RouterService
    published: list[Event] = field(default_factory=list)

    async def eventually(self, check: Callable[[], object], timeout_s: float = 10.0) -> None:
        """Wait until ``check()`` is truthy (async checks are awaited)."""
        await eventually(check, timeout_s)


async def add_series(
    ctx: Context,
    *,
    slices: int = 20,
    modality: str = "CT",
    thickness: float = 1.0,
    study: str = "CT CHEST",
    series: str = "AX 1mm LUNG",
    peer_ip: str = "10.0.0.5",
    calling_ae: str = "CT_SCANNER",
    status: str = SeriesStatus.COMPLETE,
) -> Series:
    """A series and its instance rows, as the receiver writes them."""
    async with ctx.db.session() as session:
        uid = f"2.25.{uuid.uuid4().int}"
        row = Series(
            series_uid=uid,
            study_uid=uid + ".0",
            study_description=study,
            series_description=series,
            modality=modality,
            calling_ae=calling_ae,
            called_ae="PULMOGATE",
            peer_ip=peer_ip,
            status=status,
            instance_count=slices,
        )
        session.add(row)
        await session.flush()
        for k in range(slices):
            session.add(
                Instance(
                    series_id=row.id,
                    sop_instance_uid=f"{uid}.{k + 1}",
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    path=f"/nonexistent/{k}.dcm",
                    instance_number=k + 1,
                    rows=64,
                    columns=64,
                    pixel_spacing="0.7\\0.7",
                    slice_thickness=thickness,
                    modality=modality,
                )
            )
    return row


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for one backend pair."""
    return backend_settings(request, tmp_path, "router.db", min_slices=16)


@pytest.fixture
async def context(backend: Settings) -> AsyncIterator[Context]:
    """A connected context on an emptied database."""
    async for ctx in clean_context(backend):
        yield ctx


async def start_router(ctx: Context) -> RouterHarness:
    """Start the router and the outbox relay; capture what it publishes."""
    harness = RouterHarness(ctx, RouterService())

    async def capture(event: Event) -> None:
        harness.published.append(event)

    await ctx.bus.subscribe(
        "test.router.published",
        [AnalysisRequested.routing_key, DeliveryRequested.routing_key],
        capture,
        prefetch=10,
    )
    await harness.service.start(ctx)
    ctx.spawn(OutboxRelay(ctx.db, ctx.bus, poll_s=0.1).run(), "outbox-relay")
    return harness


@pytest.fixture
async def router(context: Context) -> AsyncIterator[RouterHarness]:
    """A started router on an empty database."""
    harness = await start_router(context)
    yield harness
    await harness.service.stop()
