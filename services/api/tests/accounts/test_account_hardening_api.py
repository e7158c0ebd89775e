"""Accounts hold against the obvious attacks: weak passwords are refused with the reason, a
new password revokes old tokens, pages cannot be framed, the sign-in form resists CSRF, and
no link can put its own text on a page (real app, real PostgreSQL)."""

import re

import httpx
import pytest
from sqlalchemy import select

from pulmogate.common.db.accounts import AuditEntry, Role
from pulmogate.common.runtime import Context
from services.api.tests.conftest import ClientAs, add_user, bearer_for

WEAK = {
    "          ": "password must not be only spaces",
    "zzzzzzzzzzzz": "password must not be one character repeated",
    "abababababab": "password must have at least 4 different characters",
    "1234567890": "password must not be a keyboard or alphabet sequence",
    "asdfghjkl": "password must have at least 10 characters",
    "qwertyuiop": "password must not be a keyboard or alphabet sequence",
    "abcdabcdabcd": "password must not be a short pattern repeated",
    "password123": "password is one of the most common passwords: choose another",
    "Password2024!": "password is a common word with digits or symbols added: choose another",
    "Reader7!2024": "password must not be the username (with or without digits and symbols)",
}


@pytest.mark.parametrize(("password", "reason"), WEAK.items())
async def test_a_trivially_weak_password_is_refused_with_the_reason(
    client: httpx.AsyncClient, password: str, reason: str
) -> None:
    username = "reader7" if "Reader7" in password else "someone"

    response = await client.post(
        "/api/v1/users", json={"username": username, "password": password, "role": "viewer"}
    )

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"][-1] == "password" and error["msg"] == reason


async def test_a_reset_and_a_change_to_a_weak_password_are_refused_too(
    client: httpx.AsyncClient, app: object, ctx: Context
) -> None:
    user = await add_user(ctx, "nurse", Role.VIEWER, password="nurse first words")
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as nurse:
        login = await nurse.post(
            "/api/v1/auth/login", json={"username": "nurse", "password": "nurse first words"}
        )
        own = await nurse.post(
            "/api/v1/auth/password",
            json={"current_password": "nurse first words", "new_password": "Nurse123456"},
            headers={"X-CSRF-Token": login.json()["csrf_token"]},
        )
    reset = await client.patch(f"/api/v1/users/{user.id}", json={"password": " " * 12})

    assert own.status_code == 422 and own.json()["detail"][0]["loc"] == ["body", "new_password"]
    assert "must not be the username" in own.json()["detail"][0]["msg"]
    assert reset.status_code == 422
    assert reset.json()["detail"][0]["msg"] == "password must not be only spaces"


async def test_a_password_change_revokes_the_users_tokens_unless_told_to_keep_them(
    app: object, ctx: Context, client_as: ClientAs
) -> None:
    await add_user(ctx, "tech", Role.OPERATOR, password="tech first words")
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as tech:
        login = await tech.post(
            "/api/v1/auth/login", json={"username": "tech", "password": "tech first words"}
        )
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        old = (await tech.post("/api/v1/tokens", json={"name": "script"}, headers=csrf)).json()
        changed = await tech.post(
            "/api/v1/auth/password",
            json={"current_password": "tech first words", "new_password": "tech second words"},
            headers=csrf,
        )
        login = await tech.post(
            "/api/v1/auth/login", json={"username": "tech", "password": "tech second words"}
        )
        csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
        kept = (await tech.post("/api/v1/tokens", json={"name": "cron"}, headers=csrf)).json()
        keeping = await tech.post(
            "/api/v1/auth/password",
            json={
                "current_password": "tech second words",
                "new_password": "tech third words",
                "revoke_tokens": False,
            },
            headers=csrf,
        )
        old_answer = await tech.get(
            "/api/v1/jobs", headers={"Authorization": f"Bearer {old['token']}"}
        )
        kept_answer = await tech.get(
            "/api/v1/jobs", headers={"Authorization": f"Bearer {kept['token']}"}
        )

    assert changed.status_code == 204 and keeping.status_code == 204
    assert old_answer.status_code == 401
    assert "revoked" in old_answer.json()["detail"]
    assert kept_answer.status_code == 200
    async with ctx.db.session() as session:
        details = [
            e.details
            for e in await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.action == "user.password")
                .order_by(AuditEntry.id)
            )
        ]
    assert details == [
        {"tokens_revoked": 1, "revoke_tokens": True},
        {"tokens_revoked": 0, "revoke_tokens": False},
    ]


async def test_an_admin_reset_revokes_the_users_tokens(
    client: httpx.AsyncClient, app: object, ctx: Context
) -> None:
    headers = await bearer_for(ctx, "scanner-bot", Role.OPERATOR)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api.test", headers=headers
    ) as bot:
        before = await bot.get("/api/v1/jobs")
        users = (await client.get("/api/v1/users")).json()
        bot_id = next(u["id"] for u in users if u["username"] == "scanner-bot")
        reset = await client.patch(
            f"/api/v1/users/{bot_id}", json={"password": "a new long secret"}
        )
        after = await bot.get("/api/v1/jobs")

    assert before.status_code == 200 and reset.status_code == 200
    assert after.status_code == 401


async def test_every_answer_forbids_framing_and_pages_get_a_strict_policy(
    client: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    answers = {
        "api": await client.get("/api/v1/jobs"),
        "page": await anonymous.get("/login"),
        "refusal": await anonymous.get("/api/v1/jobs"),
        "docs": await anonymous.get("/docs"),
        "health": await anonymous.get("/healthz"),
    }

    for name, answer in answers.items():
        assert answer.headers["x-frame-options"] == "DENY", name
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], name
        assert answer.headers["x-content-type-options"] == "nosniff", name
    page_policy = answers["page"].headers["content-security-policy"]
    assert "script-src 'self'" in page_policy and "form-action 'self'" in page_policy
    assert answers["docs"].headers["content-security-policy"] == "frame-ancestors 'none'"
    assert "onsubmit=" not in (await client.get("/jobs")).text


async def test_the_sign_in_form_refuses_a_post_without_its_own_csrf_token(
    anonymous: httpx.AsyncClient, ctx: Context
) -> None:
    await add_user(ctx, "victim", Role.ADMIN, password="victim long secret")
    credentials = {"username": "victim", "password": "victim long secret"}

    # A form on another site: no login CSRF cookie travels with it (SameSite=Strict).
    forged = await anonymous.post("/login", data={**credentials, "login_csrf": "guessed"})
    form = await anonymous.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert token is not None
    wrong_field = await anonymous.post("/login", data={**credentials, "login_csrf": "guessed"})
    signed_in = await anonymous.post("/login", data={**credentials, "login_csrf": token.group(1)})
    # The JSON sign-in takes only JSON: a cross-site form cannot send it.
    as_form = await anonymous.post(
        "/api/v1/auth/login",
        content="username=victim&password=victim+long+secret",
        headers={"content-type": "text/plain"},
    )

    assert forged.status_code == 403 and "sign-in form expired" in forged.text
    assert "pulmogate_session" not in forged.cookies
    assert wrong_field.status_code == 403
    assert signed_in.status_code == 303 and "pulmogate_session" in signed_in.cookies
    cookie = form.headers["set-cookie"].lower()
    assert "samesite=strict" in cookie and "httponly" in cookie
    assert as_form.status_code == 422


async def test_no_query_parameter_becomes_text_on_a_page(
    anonymous: httpx.AsyncClient, ctx: Context
) -> None:
    await add_user(ctx, "reader", Role.VIEWER, password="reader long secret")
    form = await anonymous.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert token is not None
    await anonymous.post(
        "/login",
        data={"username": "reader", "password": "reader long secret", "login_csrf": token[1]},
    )
    bait = "Your session expired: call 555-0100 to unlock"

    pages = [
        await anonymous.get("/jobs", params={"error": bait, "notice": bait}),
        await anonymous.get("/status", params={"error": bait}),
        await anonymous.get("/login", params={"error": bait, "notice": bait}),
    ]

    for page in pages:
        assert page.status_code == 200
        assert "555-0100" not in page.text


async def test_a_password_set_under_an_older_policy_still_signs_in_and_is_rehashed(
    anonymous: httpx.AsyncClient, ctx: Context
) -> None:
    from argon2 import PasswordHasher

    from pulmogate.common.db.accounts import User

    # Hashed with other argon2 parameters than today's: sign-in rehashes it, and the weak
    # password it protects must not turn that into a refusal (or a 500).
    async with ctx.db.session() as session:
        session.add(
            User(username="legacy", role=Role.VIEWER, password_hash=PasswordHasher().hash("abc"))
        )

    signed_in = await anonymous.post(
        "/api/v1/auth/login", json={"username": "legacy", "password": "abc"}
    )

    assert signed_in.status_code == 200, signed_in.text
    async with ctx.db.session() as session:
        stored = await session.scalar(select(User.password_hash).where(User.username == "legacy"))
    assert stored is not None and "m=1024" in stored  # today's (test-sized) parameters
