"""ApiService runs real uvicorn: port 0 picks a free port, stop ends it, a taken port fails."""

import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from pulmogate.api.service import ApiService
from pulmogate.common.runtime import Context


@pytest.fixture
async def service(ctx: Context) -> AsyncIterator[ApiService]:
    svc = ApiService()
    await svc.start(ctx)
    yield svc
    await svc.stop()


async def test_the_service_serves_healthz_over_tcp_on_the_port_it_bound(
    service: ApiService,
) -> None:
    assert service.port and service.port > 0

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{service.port}") as client:
        health = await client.get("/healthz")
        jobs = await client.get("/api/v1/jobs")

    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert jobs.status_code == 200 and jobs.json()["total"] == 0


async def test_stop_closes_the_port(ctx: Context) -> None:
    svc = ApiService()
    await svc.start(ctx)
    port = svc.port
    await svc.stop()

    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/healthz")


async def test_a_port_in_use_fails_start_with_an_error(ctx: Context) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ctx.settings.api_port = taken.getsockname()[1]

        with pytest.raises(OSError, match="in use"):
            await ApiService().start(ctx)
