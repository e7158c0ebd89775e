"""Liveness, readiness and Prometheus metrics (probes need no sign-in; metrics may need a token)."""

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from pulmogate.api.crud.jobs import count_by_status
from pulmogate.api.deps import ContextDep
from pulmogate.api.errors import Unauthorized
from pulmogate.api.metrics import set_job_counts
from pulmogate.api.schemas import ErrorMessage, Health, Readiness
from pulmogate.common.credentials import same_secret
from pulmogate.common.runtime import Context

router = APIRouter(tags=["health"])
log = structlog.get_logger("pulmogate.api")

CHECK_TIMEOUT_S = 5.0


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive and its event loop answers (no I/O)."""
    return Health(status="ok")


async def _check_database(ctx: Context) -> str:
    async with ctx.db.sessions() as session:
        await session.execute(text("SELECT 1"))
    return "ok"


async def _check_bus(ctx: Context) -> str:
    return "ok" if await ctx.bus.ping() else "unreachable"


async def _run_check(name: str, check: Coroutine[Any, Any, str]) -> str:
    """A check's answer: ok, or why it failed."""
    try:
        return await asyncio.wait_for(check, CHECK_TIMEOUT_S)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_S:g} s"
    except Exception as exc:
        log.warning("readiness check failed", check=name, error=repr(exc))
        return f"{type(exc).__name__}: {exc}"[:300]


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"description": "The database or the bus does not answer"}},
)
async def readyz(ctx: ContextDep) -> Readiness | JSONResponse:
    """The database answers SELECT 1 and the bus is connected."""
    database, bus = await asyncio.gather(
        _run_check("database", _check_database(ctx)),
        _run_check("bus", _check_bus(ctx)),
    )
    checks = {"database": database, "bus": bus}
    failed = [name for name, result in checks.items() if result != "ok"]
    if failed:
        detail = "not ready: " + "; ".join(f"{name} {checks[name]}" for name in failed)
        return JSONResponse(
            status_code=503, content={"detail": detail, "status": "not ready", "checks": checks}
        )
    return Readiness(status="ready", checks=checks)


@router.get(
    "/metrics",
    response_class=Response,
    responses={401: {"model": ErrorMessage, "description": "PULMOGATE_METRICS_TOKEN is set"}},
)
async def metrics(ctx: ContextDep, request: Request) -> Response:
    """Prometheus exposition of this process's metrics, with job counts fresh from the DB.

    Open unless PULMOGATE_METRICS_TOKEN is set; then scrapers send it as a bearer token.
    """
    expected = ctx.settings.metrics_token.get_secret_value()
    if expected:
        scheme, _, sent = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not same_secret(sent.strip(), expected):
            raise Unauthorized("metrics need 'Authorization: Bearer <PULMOGATE_METRICS_TOKEN>'")
    try:
        async with ctx.db.sessions() as session:
            counts = await asyncio.wait_for(count_by_status(session), CHECK_TIMEOUT_S)
        set_job_counts(counts)
    except Exception as exc:
        log.warning("job counts unavailable for metrics", error=repr(exc))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
