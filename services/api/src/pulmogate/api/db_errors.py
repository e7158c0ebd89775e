"""Values the database cannot hold (an id or a count beyond its integer range) are a 422."""

import structlog
from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

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


async def database_error(_request: Request, exc: Exception) -> JSONResponse:
    """A 422 when the caller's number does not fit; otherwise a logged 500."""
    if _is_bad_input(exc):
        return JSONResponse(status_code=422, content={"detail": OUT_OF_RANGE})
    log.error("database error", error=repr(exc)[:500])
    return JSONResponse(status_code=500, content={"detail": "database error"})


DATABASE_ERRORS: tuple[type[Exception], ...] = (DBAPIError, OverflowError)
