"""Receiver test fixtures (real Postgres database per module, dcmtk tools, the receiver)."""

from services.receiver.tests.helpers import receiver_on
from tests.fixtures.infra import dcmtk, pg_url

__all__ = ["dcmtk", "pg_url", "receiver_on"]
