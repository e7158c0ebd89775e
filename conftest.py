"""Fixtures shared by every test folder (real Postgres, RabbitMQ, free ports)."""

pytest_plugins = ("tests.fixtures.infra",)
