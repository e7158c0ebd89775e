"""Documented error answers for the OpenAPI schema."""

from typing import Any

from pulmogate.api.schemas import ErrorMessage

Responses = dict[int | str, dict[str, Any]]


def not_found(what: str) -> Responses:
    """A 404 for an unknown id."""
    return {404: {"model": ErrorMessage, "description": f"No {what} with this id"}}


def conflict(why: str) -> Responses:
    """A 409 with the reason."""
    return {409: {"model": ErrorMessage, "description": why}}
