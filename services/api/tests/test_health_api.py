"""/healthz, /readyz (real Postgres and RabbitMQ, real faults), /metrics, /docs, the user hook."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import HTTPException

from pulmogate.api.app import create_app
from pulmogate.api.deps import current_user
from pulmogate.common.bus import Bus
from pulmogate.common.bus.rabbitmq import RabbitBus
from pulmogate.common.db.session import Database
from pulmogate.common.runtime import Context
from pulmogate.common.settings import Settings
from pulmogate.common.storage import Storage
from services.api.tests.rows import MakeJob
from tests.fixtures.infra import free_port


@pytest.fixture
def bus(amqp_url: str) -> Bus:
    """A real RabbitMQ bus on this module's vhost (the ctx fixture connects it)."""
    return RabbitBus(amqp_url)


async def test_healthz_answers_without_touching_anything(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_is_ready_when_database_and_bus_answer(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "bus": "ok"}}


async def test_readyz_is_503_naming_the_bus_when_its_connection_is_closed(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    await ctx.bus.close()

    response = await client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["detail"] == "not ready: bus unreachable"
    assert body["checks"] == {"database": "ok", "bus": "unreachable"}


@pytest.fixture
async def unreachable_db_client(ctx: Context, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a Postgres URL where nothing listens."""
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nowhere"
    db = Database(url)
    broken = Context(Settings(data_dir=tmp_path), db, ctx.bus, Storage(tmp_path))
    transport = httpx.ASGITransport(app=create_app(broken))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
        yield c
    await db.dispose()


async def test_readyz_is_503_naming_the_database_when_it_does_not_answer(
    unreachable_db_client: httpx.AsyncClient,
) -> None:
    response = await unreachable_db_client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["detail"].startswith("not ready: database ")
    assert body["checks"]["bus"] == "ok" and body["checks"]["database"] != "ok"


async def test_metrics_still_answer_when_the_database_does_not(
    unreachable_db_client: httpx.AsyncClient,
) -> None:
    response = await unreachable_db_client.get("/metrics")

    assert response.status_code == 200 and "pulmogate_" in response.text


async def test_metrics_count_jobs_by_status_at_scrape_time(
    client: httpx.AsyncClient, make_job: MakeJob
) -> None:
    await make_job(status="done")
    await make_job(status="done")
    await make_job(status="failed")

    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'pulmogate_jobs{status="done"} 2.0' in response.text
    assert 'pulmogate_jobs{status="failed"} 1.0' in response.text
    assert 'pulmogate_jobs{status="queued"} 0.0' in response.text
    assert "pulmogate_deliveries_total" in response.text or "python_info" in response.text


async def test_openapi_docs_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    spec = (await client.get("/openapi.json")).json()

    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert {"/api/v1/jobs", "/api/v1/rules", "/api/v1/destinations", "/readyz"} <= set(
        spec["paths"]
    )


async def test_every_api_route_asks_for_the_current_user_but_probes_do_not(
    ctx: Context,
) -> None:
    app = create_app(ctx)

    def refuse() -> None:
        raise HTTPException(status_code=401, detail="sign in first")

    app.dependency_overrides[current_user] = refuse
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        guarded = [
            await client.get("/api/v1/jobs"),
            await client.get("/api/v1/jobs/1"),
            await client.get("/api/v1/jobs/1/log"),
            await client.get("/api/v1/rules"),
            await client.post("/api/v1/rules", json={"name": "x"}),
            await client.get("/api/v1/destinations"),
            await client.delete("/api/v1/destinations/1"),
        ]
        probes = [await client.get(p) for p in ("/healthz", "/readyz", "/metrics")]

    assert [r.status_code for r in guarded] == [401] * len(guarded)
    assert guarded[0].json() == {"detail": "sign in first"}
    assert [r.status_code for r in probes] == [200, 200, 200]
