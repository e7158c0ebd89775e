"""Failure notices in the router: asked for when a job ends without results under a rule
with destinations, delivered once inference stored them, never for ignored jobs."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from pulmogate.common.db.models import (
    Delivery,
    DeliveryStatus,
    Job,
    JobStatus,
    OutputObject,
)
from pulmogate.common.events import AnalysisFinished, Event, NoticeRequested
from pulmogate.common.runtime import Context

from .conftest import RouterHarness, add_series, start_router
from .test_router_service import add_rule, logs, routed_job

SETTLE_S = 0.5  # five outbox polls: what would be published has been by then


@pytest.fixture
async def router(context: Context) -> AsyncIterator[tuple[RouterHarness, list[int]]]:
    """The router, and the job ids of every notice.requested it published."""
    asked: list[int] = []

    async def capture(event: Event) -> None:
        assert isinstance(event, NoticeRequested)
        asked.append(event.job_id)

    await context.bus.subscribe("test.router.notices", [NoticeRequested.routing_key], capture)
    harness = await start_router(context)
    yield harness, asked
    await harness.service.stop()


async def _set(ctx: Context, job_id: int, **fields: object) -> None:
    async with ctx.db.session() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        for key, value in fields.items():
            setattr(job, key, value)


async def _store_notice(ctx: Context, job_id: int) -> None:
    """The rows inference writes once it stored the notice page and SR."""
    async with ctx.db.session() as session:
        for kind, sop_class in (
            ("notice", "1.2.840.10008.5.1.4.1.1.7"),
            ("noticesr", "1.2.840.10008.5.1.4.1.1.88.34"),
        ):
            session.add(
                OutputObject(
                    job_id=job_id,
                    kind=kind,
                    sop_instance_uid=f"2.25.{job_id}{len(kind)}",
                    sop_class_uid=sop_class,
                    series_uid=f"2.25.{job_id}0{len(kind)}",
                    path=f"/results/{job_id}/{kind}.dcm",
                )
            )


async def _deliveries(ctx: Context, job_id: int) -> list[Delivery]:
    async with ctx.db.session() as session:
        rows = await session.scalars(select(Delivery).where(Delivery.job_id == job_id))
        return list(rows)


async def test_a_refused_series_under_a_rule_with_destinations_asks_for_a_notice(
    router: tuple[RouterHarness, list[int]],
) -> None:
    harness, asked = router
    await add_rule(harness.ctx, destinations=[("pacs", True)])
    job = await routed_job(harness, await add_series(harness.ctx, thickness=5.0))
    assert job.status == JobStatus.REJECTED and job.reason_code == "SLICE_TOO_THICK"
    await harness.eventually(lambda: asked == [job.id])
    assert "failure notice requested for the rule's destinations" in await logs(harness.ctx, job.id)


@pytest.mark.parametrize(
    "rule",
    [
        {"destinations": [("pacs", True)], "failure_notices": False},
        {"destinations": []},
        {"destinations": [("off", False)]},
    ],
    ids=["notices-off", "no-destinations", "destination-disabled"],
)
async def test_no_notice_when_the_rule_does_not_want_one_or_has_nowhere_to_send_it(
    router: tuple[RouterHarness, list[int]], rule: dict[str, object]
) -> None:
    harness, asked = router
    await add_rule(harness.ctx, **rule)
    job = await routed_job(harness, await add_series(harness.ctx, thickness=5.0))
    await asyncio.sleep(SETTLE_S)
    assert job.status == JobStatus.REJECTED and asked == []


async def test_an_ignored_series_gets_no_notice(router: tuple[RouterHarness, list[int]]) -> None:
    harness, asked = router
    await add_rule(harness.ctx, source_ae_title="OTHER_AE", destinations=[("pacs", True)])
    job = await routed_job(harness, await add_series(harness.ctx, thickness=5.0))
    assert job.status == JobStatus.IGNORED
    await harness.ctx.bus.publish(AnalysisFinished(job_id=job.id, status=job.status))
    await asyncio.sleep(SETTLE_S)
    assert asked == []


async def test_a_failed_analysis_asks_for_a_notice_and_its_stored_notice_is_delivered(
    router: tuple[RouterHarness, list[int]],
) -> None:
    """inference answers analysis.finished (failed) twice: before and after the notice."""
    harness, asked = router
    await add_rule(harness.ctx, destinations=[("pacs-a", True), ("pacs-b", True), ("off", False)])
    job = await routed_job(harness, await add_series(harness.ctx))
    await _set(harness.ctx, job.id, status=JobStatus.FAILED, reason_code="ANALYSIS_ERROR")
    await harness.ctx.bus.publish(AnalysisFinished(job_id=job.id, status=JobStatus.FAILED))
    await harness.eventually(lambda: asked == [job.id])
    assert await _deliveries(harness.ctx, job.id) == []

    await _store_notice(harness.ctx, job.id)
    for _ in range(2):  # a redelivered analysis.finished plans nothing more
        await harness.ctx.bus.publish(AnalysisFinished(job_id=job.id, status=JobStatus.FAILED))

    async def planned() -> bool:
        return len(await _deliveries(harness.ctx, job.id)) == 2

    await harness.eventually(planned)
    await asyncio.sleep(SETTLE_S)
    deliveries = await _deliveries(harness.ctx, job.id)
    assert sorted(d.destination.name for d in deliveries) == ["pacs-a", "pacs-b"]
    assert {d.status for d in deliveries} == {DeliveryStatus.PENDING}
    async with harness.ctx.db.session() as session:
        row = await session.get(Job, job.id)
    assert row is not None and row.status == JobStatus.FAILED  # the job keeps its outcome
    assert row.reason_code == "ANALYSIS_ERROR" and asked == [job.id]
    assert any(
        line.startswith("sending the failure notice to pacs-a")
        for line in await logs(harness.ctx, job.id)
    )
