"""Reliability suite fixtures: real Postgres database and RabbitMQ vhost per module, and the
recording destination a module's gateway delivers to."""

from collections.abc import Iterator

import pytest

from tests.fixtures.infra import amqp_url, dcmtk, pg_url
from tests.reliability.recording_scp import RecordingSCP, recording_scp

__all__ = ["amqp_url", "dcmtk", "destination", "pg_url"]


@pytest.fixture(scope="module")
def destination() -> Iterator[RecordingSCP]:
    """A recording storage SCP, one per module."""
    with recording_scp() as scp:
        yield scp
