"""Fault injectors for the reliability suite: SIGKILL and restart a service process, cut
RabbitMQ connections of one vhost, terminate Postgres sessions of one database.

Every fault here is a real one (a killed OS process, a connection closed by the broker
or the database server); nothing is mocked.
"""

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.fixtures.gateway import PULMOGATE, Gateway, answers_echo

RABBITMQCTL = "/usr/sbin/rabbitmqctl"


def kill(gw: Gateway, service: str) -> None:
    """SIGKILL one service process (no shutdown code runs) and reap it."""
    proc = gw.processes[service]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def restart(gw: Gateway, service: str) -> None:
    """Start the service again with the same configuration, appending to its log."""
    log = (gw.log_dir / f"{service}.log").open("ab")
    gw.processes[service] = subprocess.Popen(
        [PULMOGATE, service], env=gw.env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_echo(gw: Gateway, timeout: float = 30.0) -> None:
    """Wait until the receiver answers C-ECHO again."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gw.assert_alive()
        if answers_echo(gw):
            return
        time.sleep(0.2)
    raise AssertionError("receiver did not answer C-ECHO after restart")


def wait_api(gw: Gateway, timeout: float = 60.0) -> None:
    """Wait until the restarted process's API answers /readyz (and C-ECHO)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gw.assert_alive()
        try:
            if httpx.get(f"{gw.api}/readyz", timeout=2).status_code == 200:
                wait_echo(gw, timeout=max(deadline - time.monotonic(), 1))
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("the API did not answer after restart")


def sqlite_rows(db_path: Path, query: str) -> list[tuple[object, ...]]:
    """Rows of one query on the embedded database, read-only (the gateway may be writing)."""
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)) as conn:
        return list(conn.execute(query).fetchall())


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, step: float = 0.05
) -> None:
    """Poll ``condition`` until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def psql_url(pg_url: str) -> str:
    """The libpq URL of a ``postgresql+asyncpg://`` SQLAlchemy URL."""
    return pg_url.replace("postgresql+asyncpg://", "postgresql://", 1)


def sql(pg_url: str, query: str) -> list[list[str]]:
    """Run one query with psql; rows as lists of text fields."""
    out = subprocess.run(
        ["psql", psql_url(pg_url), "-At", "-F", "\t", "-c", query],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def terminate_db_sessions(pg_url: str) -> int:
    """Kill every server session on this test's database (what a Postgres restart does to
    its clients), leaving the shared server and other databases alone."""
    name = urlsplit(psql_url(pg_url)).path.lstrip("/")
    admin = psql_url(pg_url).rsplit("/", 1)[0] + "/postgres"
    out = subprocess.run(
        [
            "psql",
            admin,
            "-At",
            "-c",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip() or 0)


def vhost_of(amqp_url: str) -> str:
    """The vhost of an AMQP URL."""
    return unquote(urlsplit(amqp_url).path.lstrip("/"))


def vhost_connections(amqp_url: str) -> int:
    """How many client connections this test's vhost has."""
    listed = subprocess.run(
        [RABBITMQCTL, "list_connections", "-q", "--no-table-headers", "vhost"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sum(line.strip() == vhost_of(amqp_url) for line in listed.splitlines())


def close_vhost_connections(amqp_url: str) -> int:
    """Close every client connection of this test's vhost, as a broker restart would; the
    broker itself is shared with other tests and stays up. Returns how many were open."""
    open_before = vhost_connections(amqp_url)
    subprocess.run(
        [
            RABBITMQCTL,
            "close_all_connections",
            "--vhost",
            vhost_of(amqp_url),
            "--limit",
            "1000",
            "reliability test: broker restart",
        ],
        check=True,
        capture_output=True,
    )
    return open_before


@contextmanager
def publishing_only(amqp_url: str, routing_key_regex: str) -> Iterator[None]:
    """Let new connections of this vhost publish to the ``pulmogate`` exchange only with
    routing keys matching the regex (RabbitMQ topic permissions): any other publish is
    refused by the broker, as when it is unreachable at that moment."""
    vhost = vhost_of(amqp_url)
    subprocess.run(
        [
            RABBITMQCTL,
            "set_topic_permissions",
            "-p",
            vhost,
            "guest",
            "pulmogate",
            routing_key_regex,
            ".*",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield
    finally:
        subprocess.run(
            [RABBITMQCTL, "clear_topic_permissions", "-p", vhost, "guest"],
            check=True,
            capture_output=True,
        )


def queue_depths(amqp_url: str) -> dict[str, int]:
    """Queues of this test's vhost that hold messages (ready or unacked), delay queues aside."""
    listed = subprocess.run(
        [
            RABBITMQCTL,
            "list_queues",
            "-q",
            "--no-table-headers",
            "-p",
            vhost_of(amqp_url),
            "name",
            "messages",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return held_messages(listed)


def held_messages(listed: str) -> dict[str, int]:
    """The queues of a ``list_queues name messages`` listing that hold messages, delay
    queues aside."""
    depths = {}
    for line in listed.splitlines():
        name, _, count = line.partition("\t")
        if count.strip() not in ("", "0") and not name.startswith("pulmogate.delay."):
            depths[name] = int(count)
    return depths


def log_text(log_dir: Path) -> str:
    """All service logs of a gateway."""
    return "".join(p.read_text(errors="replace") for p in sorted(log_dir.glob("*.log")))
