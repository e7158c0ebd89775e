"""Who may call what: 401 without credentials on every /api/v1 route, 403 by role (a table)."""

import re

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from pulmogate.common.db.accounts import Role
from pulmogate.common.runtime import Context
from services.api.tests.conftest import ClientAs

RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}

#: (method, path, the least role that may call it); ids that do not exist answer 404 when allowed.
ACCESS = [
    ("GET", "/api/v1/jobs", Role.VIEWER),
    ("GET", "/api/v1/jobs/999999", Role.VIEWER),
    ("GET", "/api/v1/jobs/999999/log", Role.VIEWER),
    ("GET", "/api/v1/rules", Role.OPERATOR),
    ("POST", "/api/v1/rules", Role.OPERATOR),
    ("GET", "/api/v1/rules/999999", Role.OPERATOR),
    ("PATCH", "/api/v1/rules/999999", Role.OPERATOR),
    ("DELETE", "/api/v1/rules/999999", Role.OPERATOR),
    ("GET", "/api/v1/destinations", Role.OPERATOR),
    ("POST", "/api/v1/destinations", Role.OPERATOR),
    ("GET", "/api/v1/destinations/999999", Role.OPERATOR),
    ("PATCH", "/api/v1/destinations/999999", Role.OPERATOR),
    ("DELETE", "/api/v1/destinations/999999", Role.OPERATOR),
    ("GET", "/api/v1/users", Role.ADMIN),
    ("POST", "/api/v1/users", Role.ADMIN),
    ("GET", "/api/v1/users/999999", Role.ADMIN),
    ("PATCH", "/api/v1/users/999999", Role.ADMIN),
    ("DELETE", "/api/v1/users/999999", Role.ADMIN),
    ("GET", "/api/v1/tokens", Role.VIEWER),
    ("POST", "/api/v1/tokens", Role.VIEWER),
    ("DELETE", "/api/v1/tokens/999999", Role.VIEWER),
    ("GET", "/api/v1/audit", Role.ADMIN),
    ("GET", "/api/v1/license", Role.VIEWER),
    ("POST", "/api/v1/license", Role.ADMIN),
    ("GET", "/api/v1/auth/me", Role.VIEWER),
    ("POST", "/api/v1/auth/password", Role.VIEWER),
    ("POST", "/api/v1/auth/logout", Role.VIEWER),
]

ACCESS_ROUTES = [(m, p) for m, p, _ in ACCESS]
OPEN = {("POST", "/api/v1/auth/login")}


async def call(client: httpx.AsyncClient, method: str, path: str) -> httpx.Response:
    body: dict[str, object] | None = {} if method in ("POST", "PATCH") else None
    return await client.request(method, path, json=body)


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) under /api/v1 in the OpenAPI schema, path ids set to 999999."""
    routes = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/api/v1/"):
            concrete = re.sub(r"\{[^}]+\}", "999999", path)
            routes += [(method.upper(), concrete) for method in operations]
    return sorted(routes)


async def test_every_api_route_but_sign_in_refuses_anonymous_callers_with_401(
    app: FastAPI, anonymous: httpx.AsyncClient
) -> None:
    routes = [r for r in api_routes(app) if r not in OPEN]
    assert set(ACCESS_ROUTES) <= set(routes)

    answers = {(m, p): (await call(anonymous, m, p)).status_code for m, p in routes}

    assert answers == dict.fromkeys(routes, 401)


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR, Role.ADMIN])
async def test_each_role_gets_403_exactly_where_the_table_says(
    role: Role, client_as: ClientAs, ctx: Context
) -> None:
    client = await client_as(role)

    answers = {(m, p): (await call(client, m, p)).status_code for m, p, _ in ACCESS}

    refused = {route for route, code in answers.items() if code == 403}
    expected = {(m, p) for m, p, least in ACCESS if RANK[role] < RANK[least]}
    assert refused == expected
    assert 401 not in answers.values()
    assert all(code < 500 for code in answers.values())


async def test_metrics_are_open_unless_a_metrics_token_is_set(
    anonymous: httpx.AsyncClient, ctx: Context
) -> None:
    open_metrics = await anonymous.get("/metrics")
    ctx.settings.metrics_token = SecretStr("scrape-secret")
    closed = await anonymous.get("/metrics")
    wrong = await anonymous.get("/metrics", headers={"Authorization": "Bearer nope"})
    right = await anonymous.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    probes = [await anonymous.get("/healthz"), await anonymous.get("/readyz")]

    assert open_metrics.status_code == 200
    assert closed.status_code == 401 and wrong.status_code == 401
    assert right.status_code == 200 and "pulmogate_" in right.text
    assert [p.status_code for p in probes] == [200, 200]
