"""Reliability suite fixtures: real Postgres database and RabbitMQ vhost per module."""

from tests.fixtures.infra import amqp_url, dcmtk, pg_url

__all__ = ["amqp_url", "dcmtk", "pg_url"]
