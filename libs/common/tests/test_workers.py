"""Whether the process analysing a job still runs: heartbeat age, and on this host its pid."""

import subprocess
from datetime import timedelta

from pulmogate.common.db.models import utcnow
from pulmogate.common.workers import GONE_AFTER_S, this_worker, worker_gone


def _here_with(pid: int, token: str = "feed") -> str:
    place = this_worker().rsplit(":", 2)[0]
    return f"{place}:{pid}:{token}"


def test_a_worker_on_this_host_is_gone_as_soon_as_its_process_ends() -> None:
    now = utcnow()
    proc = subprocess.Popen(["sleep", "30"])
    try:
        assert not worker_gone(_here_with(proc.pid), now, now)
    finally:
        proc.kill()
        proc.wait()
    assert worker_gone(_here_with(proc.pid), now, now)


def test_this_process_under_another_token_is_an_earlier_process_that_had_its_pid() -> None:
    now = utcnow()
    assert not worker_gone(this_worker(), now, now)
    mine = this_worker().rsplit(":", 1)[0]
    assert worker_gone(f"{mine}:other", now, now)


def test_a_worker_elsewhere_is_judged_by_its_heartbeat_only() -> None:
    now = utcnow()
    elsewhere = "another-host/4026531836:1:beef"
    assert not worker_gone(elsewhere, now - timedelta(seconds=GONE_AFTER_S - 1), now)
    assert worker_gone(elsewhere, now - timedelta(seconds=GONE_AFTER_S + 1), now)
    assert worker_gone(None, None, now)
    assert not worker_gone(None, now, now)
