"""GET/POST /api/v1/license on Postgres: valid, warning window, expired, tampered, community."""

from datetime import date, timedelta

import httpx
import pytest

from pulmogate.common.db.accounts import Role
from pulmogate.common.db.models import utcnow
from pulmogate.common.licensing import (
    LicenseFields,
    generate_private_key,
    issue_license,
    public_key_text,
)
from pulmogate.common.runtime import Context
from services.api.tests.conftest import ClientAs

VENDOR = generate_private_key()


@pytest.fixture(autouse=True)
def licensing_on(ctx: Context) -> None:
    ctx.settings.license_public_key = public_key_text(VENDOR)


def key(expires: date, studies_per_day: int | None = None) -> str:
    today = utcnow().date()
    issued = min(today, expires) - timedelta(days=30)
    fields = LicenseFields("pulmogate", "Test Clinic", issued, expires, studies_per_day)
    return issue_license(VENDOR, fields)


async def test_no_license_installed_reads_none(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/license")

    assert response.status_code == 200
    assert response.json()["status"] == "none"
    assert response.json()["message"] == "no license installed"


async def test_a_valid_key_is_installed_shown_and_audited(client: httpx.AsyncClient) -> None:
    expires = utcnow().date() + timedelta(days=200)

    added = await client.post("/api/v1/license", json={"key": key(expires, 100)})
    shown = (await client.get("/api/v1/license")).json()
    audit = (await client.get("/api/v1/audit", params={"action": "license.install"})).json()

    assert added.status_code == 201
    assert shown["status"] == "valid" and shown["licensee"] == "Test Clinic"
    assert shown["expires"] == expires.isoformat() and shown["days_left"] == 200
    assert shown["studies_per_day"] == 100 and shown["studies_today"] == 0
    assert audit["total"] == 1 and audit["items"][0]["username"] == "admin"
    assert audit["items"][0]["details"]["expires"] == expires.isoformat()


async def test_within_14_days_of_expiry_the_status_is_warning(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/license", json={"key": key(utcnow().date() + timedelta(days=10))})

    shown = (await client.get("/api/v1/license")).json()

    assert shown["status"] == "warning" and "(10 days left): renew it" in shown["message"]


async def test_an_expired_key_installs_but_reads_expired_with_its_date(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/api/v1/license", json={"key": key(date(2026, 1, 31))})

    shown = (await client.get("/api/v1/license")).json()

    assert shown["status"] == "expired" and shown["message"] == "license expired on 2026-01-31"


async def test_a_tampered_or_foreign_key_is_refused_with_the_reason(
    client: httpx.AsyncClient,
) -> None:
    genuine = key(utcnow().date() + timedelta(days=100))
    body = "".join(ln for ln in genuine.splitlines() if not ln.startswith("-----"))
    tag, payload, signature = body.split(".")
    tampered = f"{tag}.{payload}.{signature[:-3]}{'AAA' if signature[-3:] != 'AAA' else 'BBB'}"
    foreign = issue_license(
        generate_private_key(),
        LicenseFields("pulmogate", "Test Clinic", date(2026, 1, 1), date(2099, 1, 1)),
    )

    refused = [await client.post("/api/v1/license", json={"key": k}) for k in (tampered, foreign)]

    for response in refused:
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "key"]
        assert "signature does not verify" in response.json()["detail"][0]["msg"]
    assert (await client.get("/api/v1/license")).json()["status"] == "none"


async def test_without_a_public_key_licensing_is_off(
    client: httpx.AsyncClient, ctx: Context
) -> None:
    ctx.settings.license_public_key = ""

    shown = (await client.get("/api/v1/license")).json()
    install = await client.post("/api/v1/license", json={"key": key(date(2099, 1, 1))})

    assert shown["status"] == "community" and "analysis allowed" in shown["message"]
    assert install.status_code == 422 and "licensing is off" in install.text


async def test_viewers_read_the_status_but_only_admins_install(client_as: ClientAs) -> None:
    viewer = await client_as(Role.VIEWER)
    operator = await client_as(Role.OPERATOR)
    body = {"key": key(date(2099, 1, 1))}

    assert (await viewer.get("/api/v1/license")).status_code == 200
    assert (await viewer.post("/api/v1/license", json=body)).status_code == 403
    assert (await operator.post("/api/v1/license", json=body)).status_code == 403
