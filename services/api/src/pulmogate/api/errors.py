"""Domain errors raised by crud modules; app.py turns them into readable HTTP answers."""


class ApiError(Exception):
    """Base: carries a sentence a user can read."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] | None = None


class NotFound(ApiError):
    """The addressed object does not exist (404)."""

    status_code = 404


class Conflict(ApiError):
    """The change clashes with stored state, e.g. a duplicate name (409)."""

    status_code = 409


class InvalidField(ApiError):
    """A body field is well-formed but refers to something invalid (422, like pydantic's)."""

    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Unauthorized(ApiError):
    """No valid credentials (401); clients are told to send a bearer token or sign in."""

    status_code = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(ApiError):
    """Signed in, but the role (or a missing CSRF token) does not allow this (403)."""

    status_code = 403


class TooManyRequests(ApiError):
    """Too many failed sign-ins (429), with the seconds to wait."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after_s)}
