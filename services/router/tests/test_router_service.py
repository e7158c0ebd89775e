"""The router on real backends: series become jobs, analysed jobs become deliveries."""

from sqlalchemy import select

from pulmogate.common.db.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    Job,
    JobLog,
    JobStatus,
    RoutingRule,
    Series,
    SeriesStatus,
)
from pulmogate.common.dicom.intake.announce import arrival_of
from pulmogate.common.events import (
    AnalysisFinished,
    AnalysisRequested,
    DeliveryRequested,
)
from pulmogate.common.runtime import Context

from .conftest import RouterHarness, add_series, start_router


async def add_rule(ctx: Context, name: str = "chest", **fields: object) -> RoutingRule:
    """A routing rule with its destinations (``destinations=[(name, enabled), …]``)."""
    wanted = fields.pop("destinations", [])
    async with ctx.db.session() as session:
        rule = RoutingRule(name=name, **fields)
        for dest_name, enabled in wanted:  # type: ignore[attr-defined]
            rule.destinations.append(
                Destination(
                    name=dest_name, host="127.0.0.1", port=104, ae_title="PACS", enabled=enabled
                )
            )
        session.add(rule)
    return rule


async def job_for(ctx: Context, series_id: int) -> Job | None:
    async with ctx.db.session() as session:
        return await session.scalar(select(Job).where(Job.series_id == series_id))


async def logs(ctx: Context, job_id: int) -> list[str]:
    async with ctx.db.session() as session:
        return list(
            await session.scalars(
                select(JobLog.message).where(JobLog.job_id == job_id).order_by(JobLog.id)
            )
        )


async def routed_job(router: RouterHarness, series: Series) -> Job:
    await router.ctx.bus.publish(arrival_of(series))
    await router.eventually(lambda: job_for(router.ctx, series.id))
    job = await job_for(router.ctx, series.id)
    assert job is not None
    return job


async def test_matching_series_is_queued_and_analysis_is_requested(router: RouterHarness) -> None:
    rule = await add_rule(router.ctx, source_ip="10.0.0.0/24", study_description_filter="CHEST")
    series = await add_series(router.ctx)
    job = await routed_job(router, series)
    assert job.status == JobStatus.QUEUED
    assert job.rule_id == rule.id
    await router.eventually(
        lambda: any(
            isinstance(e, AnalysisRequested) and e.job_id == job.id for e in router.published
        )
    )
    assert "rule 'chest' matched" in (await logs(router.ctx, job.id))[0]
    async with router.ctx.db.session() as session:
        assert (await session.get(Series, series.id)).status == SeriesStatus.ROUTED  # type: ignore[union-attr]


async def test_series_without_matching_rule_is_ignored_with_reason(router: RouterHarness) -> None:
    await add_rule(router.ctx, source_ae_title="OTHER_AE")
    await add_rule(router.ctx, name="off", enabled=False)
    series = await add_series(router.ctx, study="CT HEAD", series="AX 5mm")
    job = await routed_job(router, series)
    assert job.status == JobStatus.IGNORED
    assert job.reason_code == "NO_MATCHING_RULE"
    assert job.reason == (
        "no enabled rule matches source 10.0.0.5 / AE CT_SCANNER, study 'CT HEAD', series 'AX 5mm'"
    )
    assert job.finished_at is not None
    assert (await logs(router.ctx, job.id)) == [f"ignored: {job.reason}"]


async def test_thick_slices_are_rejected_with_reason(router: RouterHarness) -> None:
    await add_rule(router.ctx)
    job = await routed_job(router, await add_series(router.ctx, thickness=5.0))
    assert job.status == JobStatus.REJECTED
    assert job.reason_code == "SLICE_TOO_THICK"
    assert job.reason == "slice thickness 5.0 mm exceeds the 2.5 mm limit"
    assert (
        "rejected: SLICE_TOO_THICK: slice thickness 5.0 mm" in (await logs(router.ctx, job.id))[0]
    )


async def test_mr_and_short_series_are_rejected_with_their_codes(router: RouterHarness) -> None:
    await add_rule(router.ctx)
    mr = await routed_job(router, await add_series(router.ctx, modality="MR"))
    short = await routed_job(router, await add_series(router.ctx, slices=3))
    assert (mr.status, mr.reason_code, mr.reason) == (
        JobStatus.REJECTED,
        "NOT_CT",
        "modality MR is not CT",
    )
    assert (short.reason_code, short.reason) == (
        "TOO_FEW_SLICES",
        "3 slices, at least 16 are needed",
    )


async def test_redelivered_series_arrived_keeps_one_job(router: RouterHarness) -> None:
    await add_rule(router.ctx)
    series = await add_series(router.ctx)
    job = await routed_job(router, series)
    await router.ctx.bus.publish(arrival_of(series))
    await router.ctx.bus.publish(arrival_of(series))
    await router.eventually(
        lambda: (
            len(
                [
                    e
                    for e in router.published
                    if isinstance(e, AnalysisRequested) and e.job_id == job.id
                ]
            )
            >= 1
        )
    )
    async with router.ctx.db.session() as session:
        jobs = (await session.scalars(select(Job).where(Job.series_id == series.id))).all()
    assert [j.id for j in jobs] == [job.id]


async def finish_analysis(
    router: RouterHarness, job: Job, status: JobStatus = JobStatus.ANALYSED
) -> None:
    async with router.ctx.db.session() as session:
        row = await session.get(Job, job.id)
        assert row is not None
        row.status = status
    await router.ctx.bus.publish(AnalysisFinished(job_id=job.id, status=status))


async def test_analysed_job_gets_one_delivery_per_enabled_destination(
    router: RouterHarness,
) -> None:
    await add_rule(router.ctx, destinations=[("pacs-a", True), ("pacs-b", True), ("old", False)])
    job = await routed_job(router, await add_series(router.ctx))
    await finish_analysis(router, job)
    await finish_analysis(router, job)  # a redelivered analysis.finished changes nothing
    await router.eventually(
        lambda: len([e for e in router.published if isinstance(e, DeliveryRequested)]) >= 2
    )
    async with router.ctx.db.session() as session:
        deliveries = (
            await session.scalars(select(Delivery).where(Delivery.job_id == job.id))
        ).all()
        row = await session.get(Job, job.id, populate_existing=True)
    assert sorted(d.destination.name for d in deliveries) == ["pacs-a", "pacs-b"]
    assert {d.status for d in deliveries} == {DeliveryStatus.PENDING}
    assert row is not None and row.status == JobStatus.DELIVERING
    requested = {e.delivery_id for e in router.published if isinstance(e, DeliveryRequested)}
    assert requested == {d.id for d in deliveries}


async def test_analysed_job_without_destinations_is_done(router: RouterHarness) -> None:
    await add_rule(router.ctx)
    job = await routed_job(router, await add_series(router.ctx))
    await finish_analysis(router, job)

    async def done() -> bool:
        row = await job_for(router.ctx, job.series_id)
        return row is not None and row.status == JobStatus.DONE

    await router.eventually(done)
    assert "no destinations configured; job done" in await logs(router.ctx, job.id)


async def test_refused_analysis_delivers_nothing(router: RouterHarness) -> None:
    await add_rule(router.ctx, destinations=[("pacs", True)])
    job = await routed_job(router, await add_series(router.ctx))
    await finish_analysis(router, job, JobStatus.REJECTED)
    await router.ctx.bus.publish(AnalysisFinished(job_id=10_000_000, status="analysed"))
    await router.eventually(lambda: True)
    async with router.ctx.db.session() as session:
        for _ in range(20):
            assert (
                await session.scalar(select(Delivery.id).where(Delivery.job_id == job.id))
            ) is None
    assert (await job_for(router.ctx, job.series_id)).status == JobStatus.REJECTED  # type: ignore[union-attr]


async def test_start_routes_complete_series_left_without_a_job(context: Context) -> None:
    await add_rule(context, destinations=[("pacs", True)])
    waiting = await add_series(context)
    receiving = await add_series(context, status=SeriesStatus.RECEIVING)
    router = await start_router(context)
    try:
        job = await job_for(context, waiting.id)
        assert job is not None and job.status == JobStatus.QUEUED
        assert await job_for(context, receiving.id) is None
    finally:
        await router.service.stop()


async def test_reconcile_plans_deliveries_for_analysed_jobs_and_requeues_due_ones(
    router: RouterHarness,
) -> None:
    from datetime import timedelta

    from pulmogate.common.db.models import utcnow

    await add_rule(router.ctx, destinations=[("pacs", True)])
    job = await routed_job(router, await add_series(router.ctx))
    long_ago = utcnow() - timedelta(minutes=10)
    async with router.ctx.db.session() as session:
        row = await session.get(Job, job.id)
        assert row is not None
        row.status = JobStatus.ANALYSED
        row.updated_at = long_ago
    await router.service.reconcile(requeue_after_s=30)
    async with router.ctx.db.session() as session:
        delivery = await session.scalar(select(Delivery).where(Delivery.job_id == job.id))
        assert delivery is not None
        delivery.status = DeliveryStatus.RETRYING
        delivery.next_attempt_at = long_ago
        delivery.updated_at = long_ago
    await router.service.reconcile(requeue_after_s=30)
    await router.eventually(
        lambda: (
            len(
                [
                    e
                    for e in router.published
                    if isinstance(e, DeliveryRequested) and e.delivery_id == delivery.id
                ]
            )
            >= 2
        )
    )
