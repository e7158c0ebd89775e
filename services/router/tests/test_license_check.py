"""The router refuses analysis without a valid license (Postgres + RabbitMQ, real keys)."""

from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from pulmogate.common.db.accounts import License
from pulmogate.common.db.models import JobStatus, utcnow
from pulmogate.common.licensing import (
    LicenseFields,
    generate_private_key,
    install_license,
    issue_license,
    public_key_text,
)
from pulmogate.common.runtime import Context, close_context, open_context
from pulmogate.common.settings import Settings
from pulmogate.router.license import check_license
from tests.fixtures.infra import clear_tables

from .conftest import RouterHarness, add_series, start_router
from .test_router_service import add_rule, logs, routed_job

VENDOR = generate_private_key()


@pytest.fixture
def backend(pg_url: str, amqp_url: str, tmp_path: Path) -> Settings:
    """Postgres and RabbitMQ, licensing on with the test vendor's public key."""
    return Settings(
        data_dir=tmp_path,
        database_url=pg_url,
        broker_url=amqp_url,
        min_slices=16,
        log_format="console",
        license_public_key=public_key_text(VENDOR),
    )


@pytest.fixture
async def context(backend: Settings) -> AsyncIterator[Context]:
    ctx = await open_context(backend, migrate=False)
    await clear_tables(ctx.db)
    yield ctx
    await close_context(ctx)


@pytest.fixture
async def router(context: Context) -> AsyncIterator[RouterHarness]:
    harness = await start_router(context)
    await add_rule(context)
    yield harness
    await harness.service.stop()


async def install(ctx: Context, expires: date, studies_per_day: int | None = None) -> None:
    today = utcnow().date()
    fields = LicenseFields(
        "pulmogate",
        "Test Clinic",
        min(today, expires) - timedelta(days=365),
        expires,
        studies_per_day,
    )
    async with ctx.db.session() as session:
        await install_license(
            session,
            issue_license(VENDOR, fields),
            ctx.settings.license_public_key,
            actor_id=None,
            actor_name="tests",
        )


async def test_without_a_license_the_job_ends_no_license_with_how_to_add_one(
    router: RouterHarness,
) -> None:
    job = await routed_job(router, await add_series(router.ctx))

    assert job.status == JobStatus.NO_LICENSE and job.reason_code == "NO_LICENSE"
    assert any("no license installed: add one" in line for line in await logs(router.ctx, job.id))
    assert router.published == []


async def test_an_expired_license_ends_the_job_license_expired_naming_the_date(
    router: RouterHarness,
) -> None:
    await install(router.ctx, date(2026, 1, 31))

    job = await routed_job(router, await add_series(router.ctx))

    assert job.status == JobStatus.LICENSE_EXPIRED
    assert job.reason == "license expired on 2026-01-31"
    assert any("license expired on 2026-01-31" in line for line in await logs(router.ctx, job.id))


async def test_a_valid_license_queues_analysis_and_the_daily_limit_refuses_the_next(
    router: RouterHarness,
) -> None:
    await install(router.ctx, utcnow().date() + timedelta(days=5), studies_per_day=1)

    first = await routed_job(router, await add_series(router.ctx))
    second = await routed_job(router, await add_series(router.ctx))

    assert first.status == JobStatus.QUEUED
    assert second.status == JobStatus.NO_LICENSE and second.reason_code == "LICENSE_DAILY_LIMIT"
    assert second.reason == (
        "the license allows 1 studies per day and 1 were analysed today (UTC); "
        "analysis resumes tomorrow"
    )


async def test_a_stored_key_whose_signature_no_longer_verifies_ends_the_job_no_license(
    router: RouterHarness,
) -> None:
    await install(router.ctx, utcnow().date() + timedelta(days=5))
    async with router.ctx.db.session() as session:
        key = (await session.scalars(select(License))).one().key_text
        tag, payload, signature = key.split(".")
        signature = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
        flipped = f"{tag}.{payload}.{signature}"
        await session.execute(update(License).values(key_text=flipped))

    job = await routed_job(router, await add_series(router.ctx))

    assert job.status == JobStatus.NO_LICENSE and job.reason_code == "NO_LICENSE"
    assert job.reason is not None
    assert job.reason.startswith("the installed license is invalid: the license signature does not")
    assert router.published == []


async def test_with_licensing_off_analysis_is_allowed_without_any_key(
    context: Context, backend: Settings
) -> None:
    series = await add_series(context)
    community = backend.model_copy(update={"license_public_key": ""})
    async with context.db.session() as session:
        assert await check_license(session, series, community) is None
        assert await check_license(session, series, backend) is not None
