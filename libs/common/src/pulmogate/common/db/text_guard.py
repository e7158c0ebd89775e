"""NUL characters never reach a text column: stripped from every bound string, on both backends.

PostgreSQL refuses U+0000 in text (asyncpg raises, the caller saw a 500 or a retried C-STORE)
while SQLite stores it, so the same input behaved differently by deployment. The edges refuse
NUL with a reason where a person or a peer can be told (API validators, the receiver's header
check); this hook is the backstop for every other path, so both databases hold the same text.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

NUL = "\x00"


def has_nul(value: object) -> bool:
    """Whether ``value`` is a string with a NUL character in it."""
    return isinstance(value, str) and NUL in value


def _clean_value(value: Any) -> Any:
    return value.replace(NUL, "") if has_nul(value) else value


def _clean_row(row: Any) -> Any:
    if isinstance(row, Mapping):
        if not any(has_nul(v) for v in row.values()):
            return row
        return {k: _clean_value(v) for k, v in row.items()}
    if isinstance(row, Sequence) and not isinstance(row, str | bytes):
        if not any(has_nul(v) for v in row):
            return row
        return type(row)(_clean_value(v) for v in row)  # type: ignore[call-arg]
    return row


def strip_nul(parameters: Any, executemany: bool) -> Any:
    """The statement's parameters with NUL removed from every string (others untouched)."""
    if executemany and isinstance(parameters, Sequence):
        return type(parameters)(_clean_row(row) for row in parameters)  # type: ignore[call-arg]
    return _clean_row(parameters)


def install(engine: Engine) -> None:
    """Strip NUL from the string parameters of every statement ``engine`` runs."""

    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _strip(
        _conn: Any,
        _cursor: Any,
        statement: str,
        parameters: Any,
        _context: Any,
        executemany: bool,
    ) -> tuple[str, Any]:
        return statement, strip_nul(parameters, executemany)
