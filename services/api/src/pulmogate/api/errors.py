"""Domain errors raised by crud modules; app.py turns them into readable HTTP answers."""


class ApiError(Exception):
    """Base: carries a sentence a user can read."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
