"""Constants and types the API tests share (rows are inserted by conftest's make_job)."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

T0 = datetime(2026, 3, 1, 8, 0, 0, tzinfo=UTC)
PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-4711"


MakeJob = Callable[..., Awaitable[int]]
