"""The UI is a client of the REST API: each page calls it in-process with the browser's session.

So a page shows exactly what the API lets this user see, and each form does exactly what the
API allows (roles, CSRF, validation, audit) — there is one set of rules, not two.
"""

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Request

from pulmogate.api.auth import CSRF_HEADER, SESSION_COOKIE

API = "/api/v1"

# Each page makes in-process API calls; httpx would log every one of them at INFO.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass
class Answer:
    """One API answer: status, parsed JSON (or None) and a readable error."""

    status: int
    data: Any
    content: bytes = b""

    @property
    def ok(self) -> bool:
        """2xx."""
        return 200 <= self.status < 300

    @property
    def error(self) -> str:
        """The API's ``detail`` as one sentence (validation errors joined)."""
        if self.ok:
            return ""
        detail = self.data.get("detail") if isinstance(self.data, dict) else None
        if isinstance(detail, list):
            parts = []
            for item in detail:
                loc = ".".join(str(x) for x in item.get("loc", [])[1:])
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            return "; ".join(parts)
        return str(detail or f"HTTP {self.status}")


class Backend:
    """Calls /api/v1 in-process, as the browser's user (session cookie + CSRF token)."""

    def __init__(self, request: Request, csrf_token: str = "") -> None:
        cookie = request.cookies.get(SESSION_COOKIE, "")
        headers = {CSRF_HEADER: csrf_token} if csrf_token else {}
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=request.app),
            base_url="http://pulmogate.internal",
            cookies={SESSION_COOKIE: cookie} if cookie else {},
            headers=headers,
            timeout=60,
        )

    async def __aenter__(self) -> "Backend":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        """``method`` ``/api/v1{path}``; the answer, JSON parsed when it is JSON."""
        response = await self.client.request(method, API + path, **kwargs)
        data: Any = None
        json_type = response.headers.get("content-type", "").startswith("application/json")
        if json_type and response.content:
            data = response.json()
        return Answer(response.status_code, data, response.content)

    async def get(self, path: str, **kwargs: Any) -> Answer:
        """GET."""
        return await self.call("GET", path, **kwargs)
