"""Who may call the operations routes: 401 without credentials, 403 for a role too small."""

from typing import Any

import httpx
import pytest

from pulmogate.common.db.accounts import Role
from services.api.tests.conftest import ClientAs

Route = tuple[str, str, dict[str, Any]]

OPERATOR_ROUTES: list[Route] = [
    ("POST", "/api/v1/rules/test", {"json": {"source_ip": "10.0.0.1"}}),
    ("POST", "/api/v1/destinations/1/echo", {}),
    ("POST", "/api/v1/jobs/1/resend", {}),
    ("DELETE", "/api/v1/jobs/1", {}),
    ("POST", "/api/v1/uploads", {"files": {"files": ("a.dcm", b"x")}}),
]
VIEWER_ROUTES: list[Route] = [
    ("GET", "/api/v1/status", {}),
    ("GET", "/api/v1/jobs/1/results.zip", {}),
]


@pytest.mark.parametrize(("method", "url", "kwargs"), OPERATOR_ROUTES + VIEWER_ROUTES)
async def test_every_operations_route_needs_credentials(
    anonymous: httpx.AsyncClient, method: str, url: str, kwargs: dict[str, Any]
) -> None:
    response = await anonymous.request(method, url, **kwargs)

    assert response.status_code == 401, response.text


async def test_viewers_read_status_and_results_but_change_nothing(client_as: ClientAs) -> None:
    viewer = await client_as(Role.VIEWER)
    operator = await client_as(Role.OPERATOR)

    for method, url, kwargs in OPERATOR_ROUTES:
        refused = await viewer.request(method, url, **kwargs)
        allowed = await operator.request(method, url, **kwargs)
        assert refused.status_code == 403, (url, refused.text)
        assert "may not do this" in refused.json()["detail"]
        assert allowed.status_code not in (401, 403), (url, allowed.text)
    for method, url, kwargs in VIEWER_ROUTES:
        response = await viewer.request(method, url, **kwargs)
        assert response.status_code in (200, 404), (url, response.text)
