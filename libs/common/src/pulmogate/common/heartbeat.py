"""Service heartbeats: each process stamps its services' rows so the status page shows who is up."""

import asyncio
import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import structlog
from sqlalchemy import select

from pulmogate.common.db.models import utcnow
from pulmogate.common.db.operations import ServiceHeartbeat
from pulmogate.common.db.session import Database

log = structlog.get_logger("pulmogate.heartbeat")

BEAT_EVERY_S = 10.0
DOWN_AFTER = timedelta(seconds=3 * BEAT_EVERY_S)


async def beat(db: Database, names: list[str], *, started: bool = False) -> None:
    """Stamp one row per service name with this host, pid and now."""
    now = utcnow()
    host, pid = socket.gethostname()[:255], os.getpid()
    async with db.session() as session:
        rows = {
            r.name: r
            for r in await session.scalars(
                select(ServiceHeartbeat).where(ServiceHeartbeat.name.in_(names))
            )
        }
        for name in names:
            row = rows.get(name)
            if row is None:
                row = ServiceHeartbeat(name=name, started_at=now)
                session.add(row)
            if started:
                row.started_at = now
            row.host, row.pid, row.seen_at = host, pid, now


def touch_alive(path: Path) -> None:
    """Mark this process's event loop as alive (read by ``pulmogate health``)."""
    try:
        path.touch()
    except OSError as exc:
        log.warning("liveness file not writable", path=str(path), error=str(exc))


def alive_age_s(path: Path) -> float | None:
    """Seconds since the liveness file was touched, or None if there is none."""
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None


async def run_heartbeat(db: Database, names: list[str], alive_file: Path | None = None) -> None:
    """Beat every ``BEAT_EVERY_S`` until cancelled (a failed beat is retried next time).

    ``alive_file`` is touched first, whatever the database says: it proves the loop runs.
    """
    first = True
    while True:
        if alive_file is not None:
            touch_alive(alive_file)
        try:
            await beat(db, names, started=first)
            first = False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("heartbeat failed", error=repr(exc))
        await asyncio.sleep(BEAT_EVERY_S)
