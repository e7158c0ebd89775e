"""ApiService runs real uvicorn: port 0 picks a free port, stop ends it, a taken port fails."""

import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from pulmogate.api.service import ApiService
from pulmogate.common.db.accounts import User
from pulmogate.common.runtime import Context

ADMIN_PASSWORD = "first admin password 1"


@pytest.fixture
async def service(ctx: Context) -> AsyncIterator[ApiService]:
    ctx.settings.admin_username = "itadmin"
    ctx.settings.admin_password = SecretStr(ADMIN_PASSWORD)
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
        anonymous = await client.get("/api/v1/jobs")
        login = await client.post(
            "/api/v1/auth/login", json={"username": "itadmin", "password": ADMIN_PASSWORD}
        )
        jobs = await client.get("/api/v1/jobs")

    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert anonymous.status_code == 401
    assert login.status_code == 200 and login.json()["role"] == "admin"
    assert jobs.status_code == 200 and jobs.json()["total"] == 0


async def test_the_first_admin_comes_from_the_environment_only_while_no_users_exist(
    service: ApiService, ctx: Context
) -> None:
    await service.stop()
    ctx.settings.admin_username = "second"
    await service.start(ctx)

    async with ctx.db.sessions() as session:
        users = (await session.scalars(select(User.username))).all()
    assert users == ["itadmin"]


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
