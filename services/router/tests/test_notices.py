"""Failure notices in the router: asked for when a job ends without results under a rule
with destinations, delivered once inference stored them, never for ignored jobs."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from pulmogate.common.db.models import (
    Delivery,
    DeliveryStatus,
    Instance,
    Job,
    JobStatus,
    OutputObject,
    RoutingRule,
    utcnow,
)
from pulmogate.common.events import (
    AnalysisFinished,
    DeliveryRequested,
    Event,
    NoticeRequested,
    ReanalysisRequested,
)
from pulmogate.common.joblog import add_log
from pulmogate.common.runtime import Context
from pulmogate.router.notices import REQUESTED_AGAIN
from pulmogate.router.service import RouterService

from .conftest import RouterHarness, add_series, start_router
from .test_router_service import add_rule, logs, routed_job

SETTLE_S = 0.5  # five outbox polls: what would be published has been by then


async def notices_asked(ctx: Context, queue: str) -> list[int]:
    """The job ids of every notice.requested published from now on (a test queue)."""
    asked: list[int] = []

    async def capture(event: Event) -> None:
        assert isinstance(event, NoticeRequested)
        asked.append(event.job_id)

    await ctx.bus.subscribe(queue, [NoticeRequested.routing_key], capture)
    return asked


@pytest.fixture
async def router(context: Context) -> AsyncIterator[tuple[RouterHarness, list[int]]]:
    """The router, and the job ids of every notice.requested it published."""
    asked = await notices_asked(context, "test.router.notices")
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
    router: tuple[RouterHarness, list[int]], rule: dict[str, Any]
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


def announced(harness: RouterHarness, delivery_id: int) -> int:
    return sum(
        isinstance(e, DeliveryRequested) and e.delivery_id == delivery_id for e in harness.published
    )


async def test_a_job_re_opened_after_its_results_were_sent_sends_its_new_notice_there(
    router: tuple[RouterHarness, list[int]],
) -> None:
    """Delivered, then re-analysed and refused: the earlier delivery carries the notice."""
    harness, asked = router
    ctx = harness.ctx
    await add_rule(ctx, destinations=[("pacs", True)])
    job = await routed_job(harness, await add_series(ctx))
    result = ctx.storage.result_path(job.id, "sr", f"2.25.{job.id}7")
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_bytes(b"earlier result")
    async with ctx.db.session() as session:
        row = await session.get(Job, job.id)
        assert row is not None and row.rule_id is not None
        rule = await session.get(RoutingRule, row.rule_id)
        assert rule is not None
        session.add(
            Delivery(
                job_id=job.id,
                destination_id=rule.destinations[0].id,
                status=DeliveryStatus.DELIVERED,
                attempts=1,
                delivered_at=utcnow(),
            )
        )
        session.add(
            OutputObject(
                job_id=job.id,
                kind="sr",
                sop_instance_uid=f"2.25.{job.id}7",
                sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34",
                series_uid="2.25.97",
                path=str(result),
            )
        )
        row.status = JobStatus.DONE
        row.finished_at = utcnow()
        await session.execute(
            update(Instance).where(Instance.series_id == job.series_id).values(slice_thickness=5.0)
        )
    await ctx.bus.publish(ReanalysisRequested(job_id=job.id, requested_by="operator"))
    await harness.eventually(lambda: asked == [job.id])
    (delivery,) = await _deliveries(ctx, job.id)
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0
    assert delivery.delivered_at is None
    assert not result.exists()  # the earlier results are gone

    await _store_notice(ctx, job.id)
    await ctx.bus.publish(AnalysisFinished(job_id=job.id, status=JobStatus.REJECTED))
    await harness.eventually(lambda: announced(harness, delivery.id) == 1)
    async with ctx.db.session() as session:
        row = await session.get(Job, job.id)
    assert row is not None and row.status == JobStatus.REJECTED
    assert row.reason_code == "SLICE_TOO_THICK"


async def test_reconcile_announces_a_notice_delivery_left_pending(
    router: tuple[RouterHarness, list[int]],
) -> None:
    """A lost delivery.requested of a notice is announced again (the job is not DELIVERING)."""
    harness, _ = router
    ctx = harness.ctx
    await add_rule(ctx, destinations=[("pacs", True)])
    job = await routed_job(harness, await add_series(ctx, thickness=5.0))
    await _store_notice(ctx, job.id)
    await ctx.bus.publish(AnalysisFinished(job_id=job.id, status=JobStatus.REJECTED))
    await harness.eventually(lambda: len(harness.published) > 0)
    (delivery,) = await _deliveries(ctx, job.id)
    await harness.eventually(lambda: announced(harness, delivery.id) == 1)
    async with ctx.db.session() as session:
        row = await session.get(Delivery, delivery.id)
        assert row is not None
        row.updated_at = utcnow() - timedelta(minutes=10)
    await harness.service.reconcile(requeue_after_s=30)
    await harness.eventually(lambda: announced(harness, delivery.id) == 2)


async def test_a_notice_request_lost_with_the_process_is_made_again_at_start(
    context: Context,
) -> None:
    """Asked for, then the process ended before inference built it. With the in-process bus
    the request went with the process: the next start asks again, once. Not asked again: a
    notice inference could not build (it said so) and one it stored. With RabbitMQ the
    request waits in its queue, and nothing is asked again."""
    asked = await notices_asked(context, "test.router.lost")
    first = await start_router(context)
    try:
        await add_rule(context, destinations=[("pacs", True)])
        jobs = [await routed_job(first, await add_series(context, thickness=5.0)) for _ in "abc"]
        lost, unbuildable, built = (job.id for job in jobs)
        await first.eventually(lambda: sorted(asked) == [lost, unbuildable, built])
        async with context.db.session() as session:
            add_log(
                session,
                unbuildable,
                "inference",
                "no failure notice sent: no instance of the series could be read for it",
                level="warning",
            )
        await _store_notice(context, built)
    finally:
        await first.service.stop()

    # The router started again; the first harness's outbox relay goes on serving both (a
    # second relay on one SQLite database would publish each message twice).
    again = RouterHarness(context, RouterService())
    await again.service.start(context)
    try:
        expected = [] if context.bus.durable else [lost]
        await again.eventually(lambda: asked[3:] == expected)
        await asyncio.sleep(SETTLE_S)
        assert asked[3:] == expected
        assert (REQUESTED_AGAIN in await logs(context, lost)) == (not context.bus.durable)
        await again.service.reconcile(requeue_after_s=30)  # the periodic round: not again
        await asyncio.sleep(SETTLE_S)
        assert asked[3:] == expected
    finally:
        await again.service.stop()
