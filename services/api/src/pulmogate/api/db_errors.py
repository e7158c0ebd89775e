"""Database errors the caller can act on: a value it cannot hold (422), a full disk (507)."""

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from pulmogate.api.db_reserve import is_disk_full

log = structlog.get_logger("pulmogate.api")

OUT_OF_RANGE = (
    "a number in the request is out of range for the database "
    "(ids and counts are at most 2147483647)"
)


def _is_bad_input(exc: BaseException) -> bool:
    """True for a value the driver could not encode (asyncpg DataError, SQLite overflow)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OverflowError) or type(seen).__name__ == "DataError":
            return True
        seen = seen.__cause__ or getattr(seen, "orig", None)
        if seen is exc:
            break
    return False


STORAGE_FULL = (
    "storage full: the database cannot write; free space on its volume "
    "(delete finished jobs) and try again"
)


async def database_error(_request: Request, exc: Exception) -> JSONResponse:
    """A 422 when the caller's number does not fit, 507 when the database's disk is full;
    otherwise a logged 500."""
    if _is_bad_input(exc):
        return JSONResponse(status_code=422, content={"detail": OUT_OF_RANGE})
    if is_disk_full(exc):
        log.error("database disk full", error=str(exc)[:300])
        return JSONResponse(status_code=507, content={"detail": STORAGE_FULL})
    log.error("database error", error=repr(exc)[:500])
    return JSONResponse(status_code=500, content={"detail": "database error"})


DATABASE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, OverflowError)
