"""`pulmogate health`: a container's liveness probe reads the file the event loop touches."""

import asyncio
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from pulmogate.common.db.migrate import upgrade_async
from pulmogate.common.db.session import Database
from pulmogate.common.heartbeat import run_heartbeat

PULMOGATE = str(Path(sys.executable).with_name("pulmogate"))


def _health(alive: Path) -> tuple[int, str]:
    """The installed ``pulmogate health``, as a container's probe runs it."""
    result = subprocess.run(
        [PULMOGATE, "health"],
        env={**os.environ, "PULMOGATE_LIVENESS_FILE": str(alive)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr


async def test_health_follows_the_heartbeat_loop(tmp_path: Path) -> None:
    alive = tmp_path / "pulmogate.alive"
    code, output = _health(alive)
    assert code == 1 and "does not exist" in output

    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await upgrade_async(url)
    db = Database(url)
    beating = asyncio.create_task(run_heartbeat(db, ["router"], alive))
    try:
        for _ in range(100):
            if alive.exists():
                break
            await asyncio.sleep(0.02)
        code, output = _health(alive)
        assert code == 0 and "alive" in output
    finally:
        beating.cancel()
        await db.dispose()

    stale = time.time() - 120
    os.utime(alive, (stale, stale))
    code, output = _health(alive)
    beat = re.search(r"not alive: last beat (\d+) s ago \(limit 60 s\)", output)
    assert code == 1 and beat is not None, output
    assert 120 <= int(beat.group(1)) < 130  # the probe's own start-up adds a second or so
