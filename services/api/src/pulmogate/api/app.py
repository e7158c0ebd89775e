"""The FastAPI application: routers, dependencies and readable JSON errors."""

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pulmogate.api.db_errors import DATABASE_ERRORS, database_error
from pulmogate.api.db_reserve import DatabaseReserve
from pulmogate.api.deps import current_user
from pulmogate.api.errors import ApiError, InvalidField
from pulmogate.api.request_guards import RequestGuards
from pulmogate.api.routes import (
    arrivals,
    audit,
    auth,
    dead_letters,
    destinations,
    health,
    jobs,
    license,
    rules,
    tokens,
    users,
)
from pulmogate.api.routes import operations as operations_routes
from pulmogate.api.security_headers import SecurityHeaders
from pulmogate.common.runtime import Context

API_PREFIX = "/api/v1"


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    """Domain errors as {"detail": ...}; field errors in pydantic's shape so clients see one."""
    assert isinstance(exc, ApiError)
    if isinstance(exc, InvalidField):
        detail: object = [{"type": "value_error", "loc": ["body", exc.field], "msg": exc.message}]
    else:
        detail = exc.message
    return JSONResponse(
        status_code=exc.status_code, content={"detail": detail}, headers=exc.headers
    )


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 with each problem's location and message (input values left out: they may be PHI)."""
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"type": e.get("type"), "loc": list(e.get("loc", ())), "msg": e.get("msg")}
        for e in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


def create_app(ctx: Context) -> FastAPI:
    """Build the app around a service context (DB, bus, storage, settings)."""
    app = FastAPI(
        title="PulmoGate",
        summary="DICOM gateway with chest CT lung lesion analysis",
        version="0.1.0",
    )
    app.state.ctx = ctx
    app.state.db_reserve = DatabaseReserve(ctx.settings)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for error in DATABASE_ERRORS:
        app.add_exception_handler(error, database_error)

    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(current_user)])
    for router in operations_routes.api_routers():
        api.include_router(router)
    api.include_router(jobs.router)
    api.include_router(arrivals.router)
    api.include_router(rules.router)
    api.include_router(destinations.router)
    api.include_router(dead_letters.router)
    api.include_router(users.router)
    api.include_router(tokens.router)
    api.include_router(audit.router)
    api.include_router(license.router)
    app.include_router(api)
    app.include_router(auth.router, prefix=API_PREFIX)
    app.include_router(health.router)
    operations_routes.mount_ui(app)
    app.add_middleware(RequestGuards, upload_max_bytes=lambda: ctx.settings.upload_max_bytes)
    app.add_middleware(SecurityHeaders)
    return app
