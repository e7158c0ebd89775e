"""The sign-in limit holds under concurrency, on PostgreSQL and on the embedded SQLite.

A real `pulmogate api` process (production argon2 cost) gets 100 wrong passwords for one
user at once; at most ``LOGIN_MAX_FAILURES`` of them may have their password checked, the
rest are refused with 429 before any check.
"""

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.gateway import ADMIN_PASSWORD, ADMIN_USERNAME
from tests.security.api_process import ApiProcess, run_api

ATTEMPTS = 100
MAX_FAILURES = 5


@pytest.fixture(params=["postgres", "sqlite"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ApiProcess]:
    """The api on a fresh database of each kind, with a ten-minute window."""
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else ""
    env = {"PULMOGATE_LOGIN_MAX_FAILURES": str(MAX_FAILURES), "PULMOGATE_LOGIN_WINDOW_S": "600"}
    with run_api(tmp_path / "data", database_url=url, extra_env=env) as process:
        yield process


async def _attempts(api: ApiProcess, password: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=api.url, timeout=120, limits=limits) as client:
        start = asyncio.Event()

        async def one() -> httpx.Response:
            await start.wait()
            return await client.post(
                "/api/v1/auth/login", json={"username": ADMIN_USERNAME, "password": password}
            )

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.sleep(0.2)
        start.set()
        return await asyncio.gather(*tasks)


def test_100_concurrent_wrong_passwords_check_at_most_the_allowed_five(api: ApiProcess) -> None:
    with api.sign_in() as admin:
        token = api.token(admin)

    answers = asyncio.run(_attempts(api, "not the password at all", ATTEMPTS))
    right_password_now = httpx.post(
        f"{api.url}/api/v1/auth/login",
        json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD},
        timeout=30,
    )
    audit = httpx.get(
        f"{api.url}/api/v1/audit",
        params={"action": "auth.login_failed", "limit": 500},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {401: MAX_FAILURES, 429: ATTEMPTS - MAX_FAILURES}, statuses
    assert audit["total"] == MAX_FAILURES  # passwords checked (and failed): five, no more
    refused = next(a for a in answers if a.status_code == 429)
    assert "too many failed sign-ins for this user from 127.0.0.1" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 600
    assert right_password_now.status_code == 429  # even the right password waits
