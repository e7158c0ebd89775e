"""Who is analysing a job, and whether that process is still alive.

A worker is named ``host/pid-namespace:pid:token`` (token: random per process, so a new
process that got the old pid is not taken for it). While it analyses a job it stamps
``jobs.worker_seen_at`` every ``BEAT_EVERY_S``. A worker that ran in this host's pid
namespace is gone exactly when its pid no longer runs (or is this process under another
token): a restarted process takes over at start, and a live one whose heartbeat could not
be written (the database was down) is not taken for dead. Elsewhere, a worker is gone when
it has not been seen for ``GONE_AFTER_S``.
"""

import os
import secrets
import socket
from datetime import datetime, timedelta
from functools import cache

BEAT_EVERY_S = 5.0
GONE_AFTER_S = 30.0


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        return "?"


@cache
def _token() -> str:
    return secrets.token_hex(4)


def this_worker() -> str:
    """This process's worker name."""
    host = socket.gethostname()[:100]
    return f"{host}/{_pid_namespace()}:{os.getpid()}:{_token()}"


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def worker_gone(worker: str | None, seen_at: datetime | None, now: datetime) -> bool:
    """True when the process named ``worker`` (last seen at ``seen_at``) no longer runs."""
    parts = (worker or "").rsplit(":", 2)
    if len(parts) == 3 and parts[1].isdigit():
        place, pid, token = parts[0], int(parts[1]), parts[2]
        if place == this_worker().rsplit(":", 2)[0]:
            # This host and pid namespace: the process table is the truth.
            if pid == os.getpid():
                return token != _token()
            return not _pid_running(pid)
    return seen_at is None or now - seen_at > timedelta(seconds=GONE_AFTER_S)
