"""Users (admin CRUD, the last admin stays), API tokens (hashed, shown once, revocable), audit."""

from datetime import timedelta

import httpx
from sqlalchemy import select

from pulmogate.common.db.accounts import ApiToken, Role
from pulmogate.common.db.models import utcnow
from pulmogate.common.runtime import Context
from services.api.tests.conftest import ClientAs

NEW_USER = {"username": "reader1", "password": "reader password 1", "role": "viewer"}


async def test_admins_create_list_change_and_delete_users(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/v1/users", json=NEW_USER)
    user_id = created.json()["id"]
    duplicate = await client.post("/api/v1/users", json=NEW_USER)
    promoted = await client.patch(f"/api/v1/users/{user_id}", json={"role": "operator"})
    listed = (await client.get("/api/v1/users")).json()
    deleted = await client.delete(f"/api/v1/users/{user_id}")
    missing = await client.get(f"/api/v1/users/{user_id}")

    assert created.status_code == 201 and created.json()["role"] == "viewer"
    assert "password" not in created.text and "argon2" not in created.text
    assert duplicate.status_code == 409 and "already exists" in duplicate.json()["detail"]
    assert promoted.status_code == 200 and promoted.json()["role"] == "operator"
    assert [u["username"] for u in listed] == ["admin", "reader1"]
    assert deleted.status_code == 204 and missing.status_code == 404


async def test_weak_passwords_bad_names_and_unknown_roles_are_422(
    client: httpx.AsyncClient,
) -> None:
    bad = [
        {**NEW_USER, "password": "short"},
        {**NEW_USER, "username": "has space"},
        {**NEW_USER, "role": "root"},
    ]

    responses = [await client.post("/api/v1/users", json=body) for body in bad]

    assert [r.status_code for r in responses] == [422, 422, 422]
    assert [r.json()["detail"][0]["loc"][-1] for r in responses] == ["password", "username", "role"]


async def test_the_last_active_admin_cannot_be_demoted_deactivated_or_deleted(
    client: httpx.AsyncClient,
) -> None:
    admin_id = next(u["id"] for u in (await client.get("/api/v1/users")).json())

    demote = await client.patch(f"/api/v1/users/{admin_id}", json={"role": "viewer"})
    deactivate = await client.patch(f"/api/v1/users/{admin_id}", json={"active": False})
    delete = await client.delete(f"/api/v1/users/{admin_id}")

    for response in (demote, deactivate, delete):
        assert response.status_code == 409
        assert "last active admin" in response.json()["detail"]


async def test_a_token_is_shown_once_stored_hashed_and_acts_with_its_users_role(
    client_as: ClientAs, ctx: Context, app: object
) -> None:
    operator = await client_as(Role.OPERATOR)

    created = await operator.post("/api/v1/tokens", json={"name": "pacs script"})
    secret = created.json()["token"]
    listed = (await operator.get("/api/v1/tokens")).json()
    async with ctx.db.sessions() as session:
        stored = (await session.scalars(select(ApiToken.token_hash))).all()

    assert created.status_code == 201 and secret.startswith(created.json()["prefix"])
    assert all("token" not in t for t in listed)
    assert created.json()["id"] in [t["id"] for t in listed]
    assert secret not in stored and all(len(h) == 64 for h in stored)

    as_token = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://api.test",
        headers={"Authorization": f"Bearer {secret}"},
    )
    async with as_token:
        me = (await as_token.get("/api/v1/auth/me")).json()
        users = await as_token.get("/api/v1/users")
        revoked = await operator.delete(f"/api/v1/tokens/{created.json()['id']}")
        after = await as_token.get("/api/v1/jobs")

    assert me["role"] == "operator" and me["auth"] == "token"
    assert users.status_code == 403
    assert revoked.status_code == 204
    assert after.status_code == 401 and "revoked" in after.json()["detail"]


async def test_expired_tokens_are_refused_and_others_tokens_look_absent(
    client_as: ClientAs, client: httpx.AsyncClient, ctx: Context, app: object
) -> None:
    viewer = await client_as(Role.VIEWER)
    admins_token = (await client.post("/api/v1/tokens", json={"name": "admin's"})).json()
    mine = (await viewer.post("/api/v1/tokens", json={"name": "v", "expires_in_days": 1})).json()
    as_mine = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://api.test",
        headers={"Authorization": f"Bearer {mine['token']}"},
    )
    async with as_mine:
        before = await as_mine.get("/api/v1/jobs")
        async with ctx.db.session() as session:
            row = await session.get(ApiToken, mine["id"])
            assert row is not None
            row.expires_at = utcnow() - timedelta(seconds=1)
        after = await as_mine.get("/api/v1/jobs")

    not_mine = await viewer.delete(f"/api/v1/tokens/{admins_token['id']}")
    admin_sees_all = {t["id"] for t in (await client.get("/api/v1/tokens")).json()}

    assert before.status_code == 200
    assert after.status_code == 401 and "expired at" in after.json()["detail"]
    assert not_mine.status_code == 404
    assert {admins_token["id"], mine["id"]} <= admin_sees_all


async def test_every_change_lands_in_the_audit_log_newest_first(
    client: httpx.AsyncClient, client_as: ClientAs
) -> None:
    operator = await client_as(Role.OPERATOR)
    dest = (
        await operator.post(
            "/api/v1/destinations",
            json={"name": "pacs", "host": "10.0.0.5", "port": 104, "ae_title": "PACS"},
        )
    ).json()
    rule = (await operator.post("/api/v1/rules", json={"name": "chest"})).json()
    await operator.patch(f"/api/v1/rules/{rule['id']}", json={"enabled": False})
    await operator.delete(f"/api/v1/rules/{rule['id']}")
    await operator.delete(f"/api/v1/destinations/{dest['id']}")
    await client.post("/api/v1/users", json=NEW_USER)
    refused = await operator.get("/api/v1/audit")

    page = (await client.get("/api/v1/audit", params={"limit": 7})).json()
    actions = [(e["username"].split("-")[0], e["action"], e["target"]) for e in page["items"]]

    assert refused.status_code == 403
    assert actions == [
        ("admin", "user.create", f"user {actions[0][2].split()[1]} reader1"),
        ("operator", "destination.delete", f"destination {dest['id']}"),
        ("operator", "rule.delete", f"rule {rule['id']}"),
        ("operator", "rule.update", f"rule {rule['id']}"),
        ("operator", "rule.create", "rule 'chest'"),
        ("operator", "destination.create", "destination 'pacs'"),
        ("operator", "token.create", actions[6][2]),
    ]
    assert page["items"][3]["details"] == {"enabled": False}
    assert "password" not in str(page["items"][0]["details"])
