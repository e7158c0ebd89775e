"""API test fixtures: a real database, the real app over ASGI, rows as services write them."""

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from pulmogate.api.app import create_app
from pulmogate.common import credentials
from pulmogate.common.api_tokens import issue_token
from pulmogate.common.bus import Bus, make_bus
from pulmogate.common.credentials import hash_password
from pulmogate.common.db.accounts import Role, User
from pulmogate.common.db.models import (
    Base,
    Delivery,
    Destination,
    Job,
    JobLog,
    OutputObject,
    Series,
)
from pulmogate.common.db.session import Database
from pulmogate.common.runtime import Context
from pulmogate.common.settings import Settings
from pulmogate.common.storage import Storage
from services.api.tests.rows import PATIENT_ID, PATIENT_NAME, T0, MakeJob


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id with test-sized cost (production parameters: test_credentials.py)."""
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(credentials, "_hasher", hasher)
    monkeypatch.setattr(credentials, "_DUMMY_HASH", hasher.hash("not a password anyone has"))


@pytest.fixture(scope="module")
def database_url(pg_url: str) -> str:
    """Postgres by default; a module overrides this fixture to run on SQLite."""
    return pg_url


@pytest.fixture
def bus() -> Bus:
    """The in-process bus (readiness tests bring a RabbitMQ one)."""
    return make_bus("memory://")


@pytest.fixture
async def ctx(database_url: str, bus: Bus, tmp_path: Path) -> AsyncIterator[Context]:
    """A context on an emptied database, as the runtime would build it."""
    settings = Settings(data_dir=tmp_path, database_url=database_url, api_port=0)
    db = Database(database_url)
    async with db.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            await session.execute(table.delete())
    await bus.connect()
    context = Context(settings, db, bus, Storage(settings.storage_dir))
    yield context
    await bus.close()
    await db.dispose()


async def add_user(ctx: Context, username: str, role: Role, password: str = "") -> User:
    """A user row (with an argon2 hash only when a password is given: hashing is slow)."""
    async with ctx.db.session() as session:
        user = User(
            username=username,
            role=role,
            password_hash=hash_password(password) if password else "",
        )
        session.add(user)
    return user


async def bearer_for(ctx: Context, username: str, role: Role) -> dict[str, str]:
    """An Authorization header for a new user of ``role``, through a real stored token."""
    user = await add_user(ctx, username, role)
    async with ctx.db.session() as session:
        _, secret = await issue_token(session, user, "tests")
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def app(ctx: Context) -> FastAPI:
    """The real app."""
    return create_app(ctx)


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, called in-process, with no credentials."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as c:
        yield c


@pytest.fixture
async def client(app: FastAPI, ctx: Context) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, called in-process by an admin with a bearer token."""
    headers = await bearer_for(ctx, "admin", Role.ADMIN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api.test", headers=headers
    ) as c:
        yield c


ClientAs = Callable[[Role], Awaitable[httpx.AsyncClient]]


@pytest.fixture
async def client_as(app: FastAPI, ctx: Context) -> AsyncIterator[ClientAs]:
    """A factory: a client signed in (bearer token) as a fresh user of the given role."""
    async with AsyncExitStack() as stack:

        async def make(role: Role) -> httpx.AsyncClient:
            headers = await bearer_for(ctx, f"{role}-{uuid.uuid4().hex[:8]}", role)
            transport = httpx.ASGITransport(app=app)
            return await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://api.test", headers=headers)
            )

        yield make


@pytest.fixture
def make_job(ctx: Context) -> MakeJob:
    """Insert a Series and its Job (plus outputs, deliveries, log lines) like the services do."""
    counter = iter(range(1, 10_000))

    async def make(
        *,
        status: str = "done",
        created_at: datetime = T0,
        outputs: list[dict[str, str]] | None = None,
        deliveries: list[dict[str, Any]] | None = None,
        logs: list[tuple[str, str, str]] | None = None,
        **job_fields: Any,
    ) -> int:
        n = next(counter)
        async with ctx.db.session() as session:
            series = Series(
                series_uid=f"1.2.826.0.1.{created_at.timestamp():.0f}.{n}",
                study_uid=f"1.2.826.0.2.{created_at.timestamp():.0f}.{n}",
                patient_name=PATIENT_NAME,
                patient_id=PATIENT_ID,
                study_description="CT CHEST",
                series_description="AXIAL 1.0",
                modality="CT",
                calling_ae="CT_SCANNER",
                called_ae="PULMOGATE",
                peer_ip="10.1.2.3",
                status="routed",
                instance_count=120,
                first_received_at=created_at - timedelta(seconds=10),
            )
            session.add(series)
            await session.flush()
            job = Job(series_id=series.id, status=status, created_at=created_at, **job_fields)
            session.add(job)
            await session.flush()
            for out in outputs or []:
                session.add(OutputObject(job_id=job.id, path="/x", **out))
            for delivery in deliveries or []:
                delivery = dict(delivery)
                dest = delivery.pop("destination")
                if isinstance(dest, Destination):
                    destination_id = dest.id
                else:
                    destination = Destination(**dest)
                    session.add(destination)
                    await session.flush()
                    destination_id = destination.id
                session.add(Delivery(job_id=job.id, destination_id=destination_id, **delivery))
            for i, (level, service, message) in enumerate(logs or []):
                session.add(
                    JobLog(
                        job_id=job.id,
                        at=created_at + timedelta(seconds=i),
                        level=level,
                        service=service,
                        message=message,
                    )
                )
            return job.id

    return make
