"""The router after a job exists: a series that grows re-opens its job, a series received
again is noted, an operator's re-analysis re-opens it, and reconciliation takes up jobs a
dead process left in any intermediate state (both backends)."""

from datetime import timedelta

from sqlalchemy import select

from pulmogate.common.db.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    Instance,
    Job,
    JobStatus,
    OutputObject,
    Series,
    SeriesStatus,
    utcnow,
)
from pulmogate.common.dicom.intake.announce import arrival_of
from pulmogate.common.events import (
    AnalysisRequested,
    DeliveryRequested,
    ReanalysisRequested,
    SeriesResent,
)
from pulmogate.common.runtime import Context
from pulmogate.common.workers import GONE_AFTER_S, this_worker

from .conftest import RouterHarness, add_series, start_router
from .test_router_service import add_rule, finish_analysis, logs, routed_job


async def grow(ctx: Context, series: Series, more: int) -> Series:
    """``more`` new instance rows, the series announced again with its new count."""
    async with ctx.db.session() as session:
        row = await session.get(Series, series.id)
        assert row is not None
        first = row.instance_count
        for k in range(first, first + more):
            session.add(
                Instance(
                    series_id=row.id,
                    sop_instance_uid=f"{row.series_uid}.{k + 1}",
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    transfer_syntax_uid="1.2.840.10008.1.2.1",
                    path=f"/nonexistent/{k}.dcm",
                    instance_number=k + 1,
                    rows=64,
                    columns=64,
                    pixel_spacing="0.7\\0.7",
                    slice_thickness=1.0,
                    modality="CT",
                )
            )
        row.instance_count = first + more
        row.status = SeriesStatus.COMPLETE
    async with ctx.db.session() as session:
        fresh = await session.get(Series, series.id)
        assert fresh is not None
        return fresh


async def set_job(ctx: Context, job_id: int, **fields: object) -> None:
    async with ctx.db.session() as session:
        row = await session.get(Job, job_id)
        assert row is not None
        for name, value in fields.items():
            setattr(row, name, value)


async def status_of(ctx: Context, job_id: int) -> str:
    async with ctx.db.session() as session:
        row = await session.get(Job, job_id, populate_existing=True)
        assert row is not None
        return row.status


def requested(router: RouterHarness, job_id: int) -> int:
    return sum(isinstance(e, AnalysisRequested) and e.job_id == job_id for e in router.published)


async def delivered_job(router: RouterHarness, slices: int = 20) -> Job:
    """A job analysed on ``slices`` instances, with one output file, delivered (DONE)."""
    job = await routed_job(router, await add_series(router.ctx, slices=slices))
    result = router.ctx.storage.result_path(job.id, "sr", f"2.25.{job.id}1")
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_bytes(b"old result")
    async with router.ctx.db.session() as session:
        session.add(
            OutputObject(
                job_id=job.id,
                kind="sr",
                sop_instance_uid=f"2.25.{job.id}1",
                sop_class_uid="1.2",
                series_uid="2.25.9",
                path=str(result),
            )
        )
    await set_job(router.ctx, job.id, status=JobStatus.DONE, finished_at=utcnow())
    return job


async def test_a_series_that_grew_after_delivery_is_checked_and_analysed_again(
    router: RouterHarness,
) -> None:
    """F1: the job was analysed on a part; the PACS sends all; the job is re-opened, its
    old results dropped, and queued for an analysis of every instance."""
    await add_rule(router.ctx, destinations=[("pacs", True)])
    job = await delivered_job(router, slices=20)
    await router.eventually(lambda: requested(router, job.id) == 1)
    series = await grow(router.ctx, job.series, 20)

    event = arrival_of(series, received_again=20)
    await router.ctx.bus.publish(event)

    await router.eventually(lambda: requested(router, job.id) == 2)
    async with router.ctx.db.session() as session:
        row = await session.get(Job, job.id, populate_existing=True)
        outputs = (
            await session.scalars(select(OutputObject).where(OutputObject.job_id == job.id))
        ).all()
    assert row is not None and row.status == JobStatus.QUEUED
    assert row.analysed_instance_count == 40 and row.finished_at is None
    assert (
        outputs == []
        and not router.ctx.storage.result_path(job.id, "sr", f"2.25.{job.id}1").exists()
    )
    lines = await logs(router.ctx, job.id)
    assert (
        "series grew from 20 to 40 instances (20 received again, 20 new): checked and analysed "
        "again; the 1 result objects of the previous analysis are replaced" in lines
    )
    assert (
        lines[-1] == "rule 'chest' matched; 40 slices passed the input checks; queued for analysis"
    )


async def test_a_rejection_for_too_few_slices_is_reconsidered_when_more_arrive(
    router: RouterHarness,
) -> None:
    """F8: a disk-full episode left 2 instances; 38 more arrive later."""
    await add_rule(router.ctx)
    job = await routed_job(router, await add_series(router.ctx, slices=2))
    assert (job.status, job.reason) == (JobStatus.REJECTED, "2 slices, at least 16 are needed")

    await router.ctx.bus.publish(arrival_of(await grow(router.ctx, job.series, 38)))

    await router.eventually(lambda: requested(router, job.id) == 1)
    async with router.ctx.db.session() as session:
        row = await session.get(Job, job.id, populate_existing=True)
    assert row is not None and row.status == JobStatus.QUEUED
    assert row.reason is None and row.reason_code is None
    assert "series grew from 2 to 40 instances: checked and analysed again" in await logs(
        router.ctx, job.id
    )


async def test_more_instances_during_the_analysis_reopen_the_job_when_it_ends(
    router: RouterHarness,
) -> None:
    """A late slice while a live process analyses: noted; the finished analysis is not
    delivered but the job is analysed again on every instance."""
    await add_rule(router.ctx, destinations=[("pacs", True)])
    job = await routed_job(router, await add_series(router.ctx))
    await set_job(
        router.ctx,
        job.id,
        status=JobStatus.ANALYSING,
        worker=this_worker(),
        worker_seen_at=utcnow(),
    )
    await router.ctx.bus.publish(arrival_of(await grow(router.ctx, job.series, 1)))
    await router.eventually(
        lambda: _has_line(
            router, job.id, "checked and analysed again after the analysis in progress"
        )
    )
    assert await status_of(router.ctx, job.id) == JobStatus.ANALYSING

    await finish_analysis(router, job)

    await router.eventually(lambda: requested(router, job.id) == 2)
    assert await status_of(router.ctx, job.id) == JobStatus.QUEUED
    async with router.ctx.db.session() as session:
        assert await session.scalar(select(Delivery.id).where(Delivery.job_id == job.id)) is None


async def _has_line(router: RouterHarness, job_id: int, text: str) -> bool:
    return any(text in line for line in await logs(router.ctx, job_id))


async def test_an_identical_resend_is_written_in_the_job_log_and_analyses_nothing(
    router: RouterHarness,
) -> None:
    await add_rule(router.ctx, destinations=[("pacs", True)])
    job = await delivered_job(router)
    resent = SeriesResent(
        series_id=job.series_id,
        series_uid=job.series.series_uid,
        calling_ae="CT_SCANNER",
        peer_ip="10.0.0.5",
        instances=20,
    )
    await router.ctx.bus.publish(resent)
    await router.eventually(lambda: _has_line(router, job.id, "series received again"))
    assert (await logs(router.ctx, job.id))[-1] == (
        "series received again: 20 instances, all already stored; no new analysis; "
        f"POST /api/v1/jobs/{job.id}/reanalyse analyses it again"
    )
    assert await status_of(router.ctx, job.id) == JobStatus.DONE
    assert requested(router, job.id) == 1
    assert router.ctx.storage.result_path(job.id, "sr", f"2.25.{job.id}1").exists()


async def test_with_identical_resend_reanalyse_a_resent_series_is_analysed_again(
    router: RouterHarness,
) -> None:
    router.ctx.settings.identical_resend = "reanalyse"
    await add_rule(router.ctx, destinations=[("pacs", True)])
    job = await delivered_job(router)
    await router.ctx.bus.publish(
        SeriesResent(
            series_id=job.series_id,
            series_uid=job.series.series_uid,
            calling_ae="CT_SCANNER",
            peer_ip="10.0.0.5",
            instances=20,
        )
    )
    await router.eventually(lambda: requested(router, job.id) == 2)
    assert await _has_line(router, job.id, "(identical_resend = reanalyse)")
    assert await status_of(router.ctx, job.id) == JobStatus.QUEUED


async def test_an_operators_reanalysis_reopens_the_job_and_redelivers_to_the_same_destination(
    router: RouterHarness,
) -> None:
    await add_rule(router.ctx, destinations=[("pacs", True)])
    job = await delivered_job(router)
    await set_job(router.ctx, job.id, status=JobStatus.ANALYSED)
    await finish_analysis(router, job)
    await router.eventually(lambda: _delivery_of(router, job.id))
    first = await _delivery_of(router, job.id)
    assert first is not None
    async with router.ctx.db.session() as session:
        row = await session.get(Delivery, first.id)
        assert row is not None
        row.status, row.attempts = DeliveryStatus.DELIVERED, 1
    await set_job(router.ctx, job.id, status=JobStatus.DONE)

    await router.ctx.bus.publish(ReanalysisRequested(job_id=job.id, requested_by="admin"))
    await router.eventually(lambda: requested(router, job.id) == 2)
    assert await _has_line(router, job.id, "re-analysis requested by admin: checked and analysed")
    await finish_analysis(router, job)

    await router.eventually(
        lambda: (
            sum(
                isinstance(e, DeliveryRequested) and e.delivery_id == first.id
                for e in router.published
            )
            == 2
        )
    )
    again = await _delivery_of(router, job.id)
    assert again is not None and (again.id, again.status, again.attempts) == (
        first.id,
        DeliveryStatus.PENDING,
        0,
    )


async def _delivery_of(router: RouterHarness, job_id: int) -> Delivery | None:
    async with router.ctx.db.session() as session:
        return await session.scalar(
            select(Delivery)
            .where(Delivery.job_id == job_id)
            .execution_options(populate_existing=True)
        )


async def test_a_purged_job_is_not_reopened(router: RouterHarness) -> None:
    await add_rule(router.ctx)
    job = await routed_job(router, await add_series(router.ctx))
    await set_job(router.ctx, job.id, status=JobStatus.DONE, purged_at=utcnow())
    await router.ctx.bus.publish(arrival_of(await grow(router.ctx, job.series, 3)))
    await router.eventually(lambda: _has_line(router, job.id, "after retention purged this job"))
    assert await status_of(router.ctx, job.id) == JobStatus.DONE
    assert requested(router, job.id) == 1


async def test_start_takes_up_every_intermediate_state_a_dead_process_left(
    context: Context,
) -> None:
    """Jobs QUEUED, ANALYSING (fresh heartbeat of another process), ANALYSED and a PENDING
    delivery, all just now: with the in-process bus everything is taken up at start; with
    RabbitMQ the analysing job waits for its worker's heartbeat to go stale."""
    rule = await add_rule(context, destinations=[("pacs", True)])
    now = utcnow()
    ids = {}
    for name in ("queued", "analysing", "analysed", "delivering"):
        series = await add_series(context)
        async with context.db.session() as session:
            job = Job(series_id=series.id, rule_id=rule.id, analysed_instance_count=20)
            session.add(job)
            series_row = await session.get(Series, series.id)
            assert series_row is not None
            series_row.status = SeriesStatus.ROUTED
            await session.flush()
            ids[name] = job.id
    await set_job(context, ids["queued"], status=JobStatus.QUEUED)
    await set_job(
        context,
        ids["analysing"],
        status=JobStatus.ANALYSING,
        worker="another-host/1:4242:beef",
        worker_seen_at=now,
        analysis_started_at=now,
    )
    await set_job(context, ids["analysed"], status=JobStatus.ANALYSED)
    async with context.db.session() as session:
        destination = await session.scalar(select(Destination.id))
        delivering = await session.get(Job, ids["delivering"])
        assert delivering is not None
        delivering.status = JobStatus.DELIVERING
        session.add(Delivery(job_id=delivering.id, destination_id=destination, status="pending"))

    router = await start_router(context)
    try:
        orphaned = not context.bus.durable
        await router.eventually(lambda: requested(router, ids["queued"]) >= (1 if orphaned else 0))
        await router.eventually(
            lambda: (
                sum(isinstance(e, DeliveryRequested) for e in router.published) >= 2
                if orphaned
                else True
            )
        )
        analysing = await status_of(context, ids["analysing"])
        analysed = await status_of(context, ids["analysed"])
        if orphaned:
            assert analysing == JobStatus.QUEUED
            assert requested(router, ids["analysing"]) == 1
            assert analysed == JobStatus.DELIVERING
            assert await _has_line(
                router,
                ids["analysing"],
                "analysis interrupted: the process analysing it (another-host/1:4242:beef) is "
                "gone; queued again",
            )
        else:
            # Another host's worker seen just now: its analysis may be running.
            assert analysing == JobStatus.ANALYSING
            assert analysed == JobStatus.ANALYSED
            await set_job(
                context, ids["analysing"], worker_seen_at=now - timedelta(seconds=GONE_AFTER_S + 1)
            )
            await router.service.reconcile(requeue_after_s=30)
            assert await status_of(context, ids["analysing"]) == JobStatus.QUEUED
            await router.eventually(lambda: requested(router, ids["analysing"]) == 1)
    finally:
        await router.service.stop()


async def test_reconcile_leaves_a_live_analysis_of_this_process_alone(
    router: RouterHarness,
) -> None:
    await add_rule(router.ctx)
    job = await routed_job(router, await add_series(router.ctx))
    await set_job(
        router.ctx,
        job.id,
        status=JobStatus.ANALYSING,
        worker=this_worker(),
        worker_seen_at=utcnow(),
        updated_at=utcnow() - timedelta(minutes=10),
    )
    await router.service.reconcile(requeue_after_s=30)
    assert await status_of(router.ctx, job.id) == JobStatus.ANALYSING
    await set_job(router.ctx, job.id, worker=this_worker().rsplit(":", 1)[0] + ":0ther")
    await router.service.reconcile(requeue_after_s=30)
    # Same pid, another token: an earlier process that had this pid, gone.
    assert await status_of(router.ctx, job.id) == JobStatus.QUEUED


async def test_an_announcement_that_finds_the_series_receiving_again_waits_for_the_next(
    router: RouterHarness,
) -> None:
    """The series reopened between its announcement and the router's turn: the router does
    not decide on a part, nor mark the series routed (its completion must still see it)."""
    await add_rule(router.ctx)
    job = await routed_job(router, await add_series(router.ctx))
    series = await grow(router.ctx, job.series, 5)
    async with router.ctx.db.session() as session:
        row = await session.get(Series, series.id)
        assert row is not None
        row.status = SeriesStatus.RECEIVING
    await set_job(router.ctx, job.id, status=JobStatus.DONE)

    await router.service.route(series.id)
    await router.service.reconcile(requeue_after_s=30)

    assert await status_of(router.ctx, job.id) == JobStatus.DONE
    async with router.ctx.db.session() as session:
        row = await session.get(Series, series.id)
        assert row is not None and row.status == SeriesStatus.RECEIVING
