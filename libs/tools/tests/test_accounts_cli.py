"""``pulmogate user create`` and ``pulmogate license keygen/issue/add`` against real Postgres."""

import asyncio
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pulmogate.common.credentials import verify_password
from pulmogate.common.db.accounts import AuditEntry, License, User
from pulmogate.common.db.session import Database
from pulmogate.tools.cli import app
from tests.fixtures.infra import clear_tables


@pytest.fixture
def database(pg_url: str) -> str:
    """An emptied Postgres database (the CLI runs its own event loop, so these tests are sync)."""

    async def clear() -> None:
        db = Database(pg_url)
        await clear_tables(db)
        await db.dispose()

    asyncio.run(clear())
    return pg_url


def rows(url: str, statement: Any) -> list[Any]:
    """The rows a query returns (in a loop of its own)."""

    async def query() -> list[Any]:
        db = Database(url)
        async with db.sessions() as session:
            result = list((await session.scalars(statement)).all())
        await db.dispose()
        return result

    return asyncio.run(query())


def run(args: list[str], env: dict[str, str], stdin: str = "") -> tuple[int, str]:
    result = CliRunner().invoke(app, args, input=stdin, env=env)
    return result.exit_code, result.output


def test_user_create_makes_an_argon2_admin_and_refuses_weak_or_taken_names(
    database: str,
) -> None:
    env = {"PULMOGATE_DATABASE_URL": database}

    created = run(
        ["user", "create", "--admin", "itadmin", "--password-stdin"], env, "long pass 123\n"
    )
    weak = run(["user", "create", "viewer1", "--password-stdin"], env, "short\n")
    taken = run(["user", "create", "itadmin", "--password-stdin"], env, "long pass 456\n")

    assert created == (0, "user itadmin created with the admin role\n")
    assert weak[0] == 1 and "at least 10 characters" in weak[1]
    assert taken[0] == 1 and "already exists" in taken[1]
    users = rows(database, select(User))
    actions = rows(database, select(AuditEntry.action))
    assert [(u.username, u.role) for u in users] == [("itadmin", "admin")]
    assert verify_password(users[0].password_hash, "long pass 123")
    assert actions == ["user.create"]


def test_a_vendor_key_pair_signs_a_license_the_gateway_installs(
    database: str, tmp_path: Path
) -> None:
    vendor_key = tmp_path / "vendor.pem"
    code, out = run(["license", "keygen", "--private-key", str(vendor_key)], {})
    public = out.strip().split("=", 1)[1]
    lic = tmp_path / "clinic.lic"
    issue = [
        "license", "issue", "--private-key", str(vendor_key), "--licensee", "Test Clinic",
        "--issued", "2026-01-01", "--expires", "2099-12-31", "--studies-per-day", "40",
        "-o", str(lic),
    ]  # fmt: skip
    env = {"PULMOGATE_DATABASE_URL": database, "PULMOGATE_LICENSE_PUBLIC_KEY": public}

    assert code == 0 and vendor_key.stat().st_mode & 0o777 == 0o600
    assert run(issue, {})[0] == 0
    added = run(["license", "add", str(lic)], env)
    other_vendor = run(["license", "keygen", "--private-key", str(tmp_path / "other.pem")], {})
    foreign = run(
        ["license", "add", str(lic)],
        {**env, "PULMOGATE_LICENSE_PUBLIC_KEY": other_vendor[1].strip().split("=", 1)[1]},
    )

    assert added == (0, "license installed: valid: licensed until 2099-12-31\n")
    assert foreign[0] == 1 and "signature does not verify" in foreign[1]
    installed = rows(database, select(License))
    assert [(r.licensee, r.expires, r.studies_per_day) for r in installed] == [
        ("Test Clinic", date(2099, 12, 31), 40)
    ]
