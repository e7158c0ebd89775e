"""Sign-in with a session cookie, CSRF on unsafe requests, rate limiting, sign-out (Postgres)."""

import httpx
import pytest

from pulmogate.api.auth import CSRF_COOKIE, SESSION_COOKIE
from pulmogate.common.db.accounts import Role
from pulmogate.common.runtime import Context
from services.api.tests.conftest import add_user

PASSWORD = "correct horse battery"
RULE = {"name": "chest", "series_description_filter": "(?i)chest"}


@pytest.fixture
async def operator(ctx: Context) -> str:
    await add_user(ctx, "op", Role.OPERATOR, PASSWORD)
    return "op"


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )


async def test_sign_in_sets_an_http_only_session_cookie_and_returns_the_csrf_token(
    anonymous: httpx.AsyncClient, operator: str
) -> None:
    response = await login(anonymous, operator, PASSWORD)

    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "op" and body["role"] == "operator" and body["auth"] == "session"
    cookies = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    csrf_cookie = next(c for c in cookies if c.startswith(CSRF_COOKIE + "="))
    assert "httponly" in session_cookie.lower() and "samesite=lax" in session_cookie.lower()
    assert "httponly" not in csrf_cookie.lower()
    assert body["csrf_token"] in csrf_cookie
    me = await anonymous.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["csrf_token"] == body["csrf_token"]


async def test_a_wrong_password_and_an_unknown_user_get_the_same_401(
    anonymous: httpx.AsyncClient, operator: str
) -> None:
    wrong = await login(anonymous, operator, "not the password")
    unknown = await login(anonymous, "nobody", PASSWORD)

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert SESSION_COOKIE not in anonymous.cookies
    assert (await anonymous.get("/api/v1/jobs")).status_code == 401


async def test_unsafe_cookie_requests_need_the_csrf_token_in_a_header_or_form_field(
    anonymous: httpx.AsyncClient, operator: str
) -> None:
    csrf = (await login(anonymous, operator, PASSWORD)).json()["csrf_token"]

    without = await anonymous.post("/api/v1/rules", json=RULE)
    wrong = await anonymous.post("/api/v1/rules", json=RULE, headers={"X-CSRF-Token": "x" * 43})
    with_header = await anonymous.post("/api/v1/rules", json=RULE, headers={"X-CSRF-Token": csrf})
    rule_id = with_header.json()["id"]
    form_delete = await anonymous.request(
        "DELETE", f"/api/v1/rules/{rule_id}", data={"csrf_token": csrf}
    )
    reads = await anonymous.get("/api/v1/rules")

    assert without.status_code == 403 and "CSRF token missing or wrong" in without.json()["detail"]
    assert wrong.status_code == 403
    assert with_header.status_code == 201
    assert form_delete.status_code == 204
    assert reads.status_code == 200 and reads.json() == []


async def test_bearer_requests_need_no_csrf_token(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/v1/rules", json=RULE)).status_code == 201


async def test_five_failures_a_minute_lock_that_username_from_that_address_with_retry_after(
    anonymous: httpx.AsyncClient, ctx: Context, operator: str
) -> None:
    failures = [await login(anonymous, operator, f"wrong password {i}") for i in range(5)]
    locked = await login(anonymous, operator, PASSWORD)
    other_user = await login(anonymous, "someone-else", "wrong password")

    assert [r.status_code for r in failures] == [401] * 5
    assert locked.status_code == 429
    assert 1 <= int(locked.headers["retry-after"]) <= 60
    assert "too many failed sign-ins" in locked.json()["detail"]
    assert other_user.status_code == 401

    ctx.settings.login_window_s = 0.01  # the window has passed
    assert (await login(anonymous, operator, PASSWORD)).status_code == 200


async def test_sign_out_ends_the_session_on_the_server(
    anonymous: httpx.AsyncClient, operator: str
) -> None:
    csrf = (await login(anonymous, operator, PASSWORD)).json()["csrf_token"]
    stolen = anonymous.cookies[SESSION_COOKIE]

    out = await anonymous.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    anonymous.cookies.set(SESSION_COOKIE, stolen)
    replay = await anonymous.get("/api/v1/jobs")

    assert out.status_code == 204
    assert replay.status_code == 401 and "sign in again" in replay.json()["detail"]


async def test_an_expired_session_is_refused(
    anonymous: httpx.AsyncClient, ctx: Context, operator: str
) -> None:
    ctx.settings.session_hours = -1.0

    await login(anonymous, operator, PASSWORD)

    assert (await anonymous.get("/api/v1/jobs")).status_code == 401


async def test_changing_ones_password_needs_the_current_one_and_ends_sessions(
    anonymous: httpx.AsyncClient, operator: str
) -> None:
    csrf = (await login(anonymous, operator, PASSWORD)).json()["csrf_token"]
    headers = {"X-CSRF-Token": csrf}
    new = "a brand new passphrase"

    wrong = await anonymous.post(
        "/api/v1/auth/password",
        json={"current_password": "guess guess", "new_password": new},
        headers=headers,
    )
    short = await anonymous.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=headers,
    )
    changed = await anonymous.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": new},
        headers=headers,
    )

    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == [
        "body",
        "current_password",
    ]
    assert short.status_code == 422
    assert changed.status_code == 204
    assert (await anonymous.get("/api/v1/jobs")).status_code == 401
    assert (await login(anonymous, operator, PASSWORD)).status_code == 401
    assert (await login(anonymous, operator, new)).status_code == 200


async def test_a_deactivated_user_cannot_sign_in_or_use_a_session(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient, operator: str
) -> None:
    await login(anonymous, operator, PASSWORD)
    users = (await client.get("/api/v1/users")).json()
    op_id = next(u["id"] for u in users if u["username"] == operator)

    await client.patch(f"/api/v1/users/{op_id}", json={"active": False})

    assert (await anonymous.get("/api/v1/jobs")).status_code == 401
    assert (await login(anonymous, operator, PASSWORD)).status_code == 401


async def test_control_characters_in_names_are_422_not_a_database_error(
    anonymous: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    login_nul = await login(anonymous, "op\x00", PASSWORD)
    token_nul = await client.post("/api/v1/tokens", json={"name": "script\x00"})
    audit_nul = await client.get("/api/v1/audit", params={"username": "a\x00"})

    assert [login_nul.status_code, token_nul.status_code, audit_nul.status_code] == [422] * 3


async def test_the_openapi_schema_documents_bearer_and_cookie_sign_in(
    anonymous: httpx.AsyncClient,
) -> None:
    schemes = (await anonymous.get("/openapi.json")).json()["components"]["securitySchemes"]

    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
        "description": "Set by POST /auth/login; unsafe requests also send X-CSRF-Token",
    }
