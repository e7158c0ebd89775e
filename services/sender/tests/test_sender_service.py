"""The sender against a real storage SCP: delivered once, retried with backoff, failed with why."""

import asyncio
import uuid
from pathlib import Path

from sqlalchemy import select

from pulmogate.common.db.models import (
    Delivery,
    DeliveryStatus,
    Destination,
    Job,
    JobLog,
    JobStatus,
    OutputObject,
    Series,
)
from pulmogate.common.events import DeliveryRequested
from pulmogate.common.runtime import Context

from .conftest import SenderHarness, StorageSCP, start_sender, write_outputs


async def delivering_job(
    ctx: Context,
    tmp_path: Path,
    peers: list[tuple[str, int, str]],
    objects: int = 3,
    *,
    status: JobStatus = JobStatus.DELIVERING,
    kind: str = "overlay",
    reason_code: str | None = None,
) -> tuple[int, list[int], list[str]]:
    """A DELIVERING job with ``objects`` outputs and one PENDING delivery per (name, port, AE)
    (or a job in ``status`` whose outputs are of ``kind``)."""
    outputs = write_outputs(tmp_path / f"out-{uuid.uuid4().hex[:6]}", objects)
    async with ctx.db.session() as session:
        series = Series(series_uid=f"2.25.{uuid.uuid4().int}", study_uid="2.25.1", status="routed")
        session.add(series)
        await session.flush()
        job = Job(series_id=series.id, status=status, reason_code=reason_code)
        session.add(job)
        await session.flush()
        for uid, path in outputs:
            session.add(
                OutputObject(
                    job_id=job.id,
                    kind=kind,
                    sop_instance_uid=uid,
                    sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
                    series_uid="2.25.2",
                    path=str(path),
                )
            )
        deliveries = []
        for name, port, ae in peers:
            destination = Destination(name=name, host="127.0.0.1", port=port, ae_title=ae)
            session.add(destination)
            await session.flush()
            delivery = Delivery(job_id=job.id, destination_id=destination.id)
            session.add(delivery)
            await session.flush()
            deliveries.append(delivery.id)
    return job.id, deliveries, [uid for uid, _ in outputs]


async def delivery(ctx: Context, delivery_id: int) -> Delivery:
    async with ctx.db.session() as session:
        row = await session.get(Delivery, delivery_id)
        assert row is not None
        return row


async def job(ctx: Context, job_id: int) -> Job:
    async with ctx.db.session() as session:
        row = await session.get(Job, job_id)
        assert row is not None
        return row


async def logs(ctx: Context, job_id: int) -> list[str]:
    async with ctx.db.session() as session:
        return list(
            await session.scalars(
                select(JobLog.message).where(JobLog.job_id == job_id).order_by(JobLog.id)
            )
        )


async def is_status(ctx: Context, delivery_id: int, *statuses: str) -> bool:
    return (await delivery(ctx, delivery_id)).status in statuses


async def test_outputs_are_delivered_over_one_association_and_the_job_is_done(
    sender: SenderHarness, pacs: StorageSCP, tmp_path: Path
) -> None:
    pacs.start()
    ctx = sender.ctx
    job_id, (delivery_id,), uids = await delivering_job(
        ctx, tmp_path, [("pacs", pacs.port, "PACS")]
    )
    await ctx.bus.publish(DeliveryRequested(delivery_id=delivery_id))
    await ctx.bus.publish(DeliveryRequested(delivery_id=delivery_id))  # a redelivery
    await sender.eventually(lambda: is_status(ctx, delivery_id, DeliveryStatus.DELIVERED))
    await sender.eventually(lambda: job(ctx, job_id))
    await asyncio.sleep(0.3)
    row = await delivery(ctx, delivery_id)
    assert row.attempts == 1 and row.delivered_at is not None and row.last_error is None
    assert dict(pacs.received) == dict.fromkeys(uids, 1)
    finished = await job(ctx, job_id)
    assert finished.status == JobStatus.DONE and finished.finished_at is not None
    assert (
        f"delivered 3 objects to pacs (PACS@127.0.0.1:{pacs.port}): 3 Explicit VR Little Endian"
        in await logs(ctx, job_id)
    )


async def test_a_failure_notice_is_delivered_and_the_job_keeps_its_outcome(
    sender: SenderHarness, pacs: StorageSCP, tmp_path: Path
) -> None:
    """A rejected job's notice is sent although the job is not DELIVERING; it stays rejected."""
    pacs.start()
    ctx = sender.ctx
    job_id, (delivery_id,), uids = await delivering_job(
        ctx,
        tmp_path,
        [("pacs", pacs.port, "PACS")],
        objects=2,
        status=JobStatus.REJECTED,
        kind="notice",
        reason_code="SLICE_TOO_THICK",
    )
    await ctx.bus.publish(DeliveryRequested(delivery_id=delivery_id))
    await sender.eventually(lambda: is_status(ctx, delivery_id, DeliveryStatus.DELIVERED))
    assert dict(pacs.received) == dict.fromkeys(uids, 1)
    rejected = await job(ctx, job_id)
    assert rejected.status == JobStatus.REJECTED and rejected.reason_code == "SLICE_TOO_THICK"


async def test_a_delivery_of_a_job_re_opened_meanwhile_waits(
    sender: SenderHarness, pacs: StorageSCP, tmp_path: Path
) -> None:
    """Queued again (its series grew): neither its old results nor an old notice are sent."""
    pacs.start()
    ctx = sender.ctx
    _, (results,), _ = await delivering_job(
        ctx, tmp_path, [("pacs", pacs.port, "PACS")], status=JobStatus.QUEUED
    )
    _, (notice,), _ = await delivering_job(
        ctx, tmp_path, [("pacs2", pacs.port, "PACS")], status=JobStatus.QUEUED, kind="notice"
    )
    for delivery_id in (results, notice):
        await ctx.bus.publish(DeliveryRequested(delivery_id=delivery_id))
    await asyncio.sleep(0.5)
    assert await is_status(ctx, results, DeliveryStatus.PENDING)
    assert await is_status(ctx, notice, DeliveryStatus.PENDING)
    assert not pacs.received


async def test_destination_down_then_up_is_retried_with_backoff_and_delivered_once(
    sender: SenderHarness, pacs: StorageSCP, tmp_path: Path
) -> None:
    ctx = sender.ctx
    job_id, (delivery_id,), uids = await delivering_job(
        ctx, tmp_path, [("pacs", pacs.port, "PACS")]
    )
    await ctx.bus.publish(DeliveryRequested(delivery_id=delivery_id))
    await sender.eventually(lambda: is_status(ctx, delivery_id, DeliveryStatus.RETRYING))
    row = await delivery(ctx, delivery_id)
    assert row.attempts == 1 and row.next_attempt_at is not None
    assert f"PACS@127.0.0.1:{pacs.port} failed" in (row.last_error or "")
    assert "refused" in (row.last_error or "").lower()
    pacs.start()
    await sender.eventually(lambda: is_status(ctx, delivery_id, DeliveryStatus.DELIVERED))
    assert dict(pacs.received) == dict.fromkeys(uids, 1)
    assert (await delivery(ctx, delivery_id)).attempts in (2, 3)
    assert (await job(ctx, job_id)).status == JobStatus.DONE
    assert any("retrying in 0.2 s" in line for line in await logs(ctx, job_id))


async def test_a_peer_that_rejects_everything_fails_after_max_attempts_with_its_status(
    sender: SenderHarness, pacs: StorageSCP, tmp_path: Path
) -> None:
    pacs.status = 0xA700
    pacs.start()
    ctx = sender.ctx
    job_id, (delivery_id,), _ = await delivering_job(ctx, tmp_path, [("pacs", pacs.port, "PACS")])
    await ctx.bus.publish(DeliveryRequested(delivery_id=delivery_id))
    await sender.eventually(lambda: is_status(ctx, delivery_id, DeliveryStatus.FAILED))
    row = await delivery(ctx, delivery_id)
    assert row.attempts == 3
    assert row.last_error is not None
    assert row.last_error == (
        f"PACS refused 3 of 3 objects (status 0xA700, first {row.last_error.split('first ')[1]}"
    )
    failed = await job(ctx, job_id)
    assert failed.status == JobStatus.FAILED
    assert failed.reason == f"delivery to pacs failed: {row.last_error}"
    assert any("failed after 3 attempt(s)" in line for line in await logs(ctx, job_id))


async def test_wrong_called_ae_is_rejected_and_recorded(
    sender: SenderHarness, pacs: StorageSCP, tmp_path: Path
) -> None:
    pacs.start()
    ctx = sender.ctx
    sender.ctx.settings.delivery_max_attempts = 1
    job_id, (delivery_id,), _ = await delivering_job(ctx, tmp_path, [("pacs", pacs.port, "WRONG")])
    await ctx.bus.publish(DeliveryRequested(delivery_id=delivery_id))
    await sender.eventually(lambda: is_status(ctx, delivery_id, DeliveryStatus.FAILED))
    row = await delivery(ctx, delivery_id)
    assert row.last_error == f"association with WRONG@127.0.0.1:{pacs.port} failed: rejected"
    assert not pacs.received
    assert (await job(ctx, job_id)).status == JobStatus.FAILED


async def test_job_waits_for_every_destination_and_fails_if_one_failed(
    sender: SenderHarness, pacs: StorageSCP, tmp_path: Path
) -> None:
    pacs.start()
    ctx = sender.ctx
    ctx.settings.delivery_max_attempts = 1
    job_id, (good, bad), _ = await delivering_job(
        ctx, tmp_path, [("pacs", pacs.port, "PACS"), ("other", pacs.port, "NOPE")]
    )
    await ctx.bus.publish(DeliveryRequested(delivery_id=good))
    await sender.eventually(lambda: is_status(ctx, good, DeliveryStatus.DELIVERED))
    assert (await job(ctx, job_id)).status == JobStatus.DELIVERING
    await ctx.bus.publish(DeliveryRequested(delivery_id=bad))
    await sender.eventually(lambda: is_status(ctx, bad, DeliveryStatus.FAILED))
    finished = await job(ctx, job_id)
    assert finished.status == JobStatus.FAILED
    assert finished.reason is not None and finished.reason.startswith("delivery to other failed: ")


async def test_start_resends_deliveries_interrupted_while_sending(
    context: Context, pacs: StorageSCP, tmp_path: Path
) -> None:
    pacs.start()
    job_id, (delivery_id,), uids = await delivering_job(
        context, tmp_path, [("pacs", pacs.port, "PACS")]
    )
    async with context.db.session() as session:
        row = await session.get(Delivery, delivery_id)
        assert row is not None
        row.status = DeliveryStatus.SENDING
        row.attempts = 1
    harness = await start_sender(context)
    try:
        await harness.eventually(lambda: is_status(context, delivery_id, DeliveryStatus.DELIVERED))
        assert dict(pacs.received) == dict.fromkeys(uids, 1)
        assert (await delivery(context, delivery_id)).attempts == 2
        assert "delivery interrupted while sending; sending again" in await logs(context, job_id)
    finally:
        await harness.service.stop()
