"""GET /api/v1/status and the Status page: heartbeats, queue depths, disk and the watermark."""

from datetime import timedelta

import httpx
from sqlalchemy import update

from pulmogate.common.db.models import utcnow
from pulmogate.common.db.operations import ServiceHeartbeat
from pulmogate.common.heartbeat import beat
from pulmogate.common.runtime import Context
from services.api.tests.rows import MakeJob


async def test_status_lists_beating_services_queues_disk_and_job_counts(
    client: httpx.AsyncClient, ctx: Context, make_job: MakeJob
) -> None:
    await beat(ctx.db, ["router", "sender"], started=True)
    async with ctx.db.session() as session:
        await session.execute(
            update(ServiceHeartbeat)
            .where(ServiceHeartbeat.name == "sender")
            .values(seen_at=utcnow() - timedelta(minutes=5))
        )
    await make_job(status="done")
    await ctx.bus.subscribe("pulmogate.router", ["series.arrived"], lambda _e: None)  # type: ignore[arg-type, return-value]

    body = (await client.get("/api/v1/status")).json()

    assert {(s["name"], s["up"]) for s in body["services"]} == {("router", True), ("sender", False)}
    assert "pulmogate.router" in body["queues"] and body["queues_error"] is None
    assert body["disk"]["accepting"] is True and 0 < body["disk"]["used_percent"] < 100
    assert body["disk"]["max_used_percent"] == 90.0
    assert body["accept_from"] == "rules"
    assert body["jobs_by_status"] == {"done": 1}


async def test_above_the_watermark_status_and_the_status_page_say_why(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    ctx.settings.disk_max_used_percent = 0.0  # any real volume is fuller than 0 %

    body = (await client.get("/api/v1/status")).json()

    assert body["disk"]["accepting"] is False
    assert (
        "above the 0 % limit: the receiver answers C-STORE with 0xA700" in body["disk"]["message"]
    )
