"""Bounds every request must keep before a route sees it: body size and a URL without NUL.

A body larger than its route allows is refused from its Content-Length before a byte is
read, or with 413 as soon as the streamed bytes pass the limit (chunked bodies have no
length). Only the upload routes take more than ``BODY_MAX_BYTES``.

A refusal sent before the body was read lingers before the connection closes (as nginx's
lingering close): closing a socket with unread bytes makes the kernel send a reset, which
makes the client drop the answer it has not read yet, so the client would see "connection
reset" instead of the sentence. The answer is sent whole, then what the client still sends
is read and thrown away for at most ``LINGER_S``, then the connection closes.
"""

import asyncio
import json
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pulmogate.api.errors import ApiError

BODY_MAX_BYTES = 1024**2
CHUNK_MAX_BYTES = 64 * 1024**2
LINGER_S = 2.0
UPLOADS = "/api/v1/uploads"
SESSIONS = "/api/v1/uploads/sessions/"


class RequestTooLarge(ApiError):
    """The request body is over the route's limit (413)."""

    status_code = 413


def _mib(n: int) -> str:
    return f"{n / 1024**2:g} MiB"


def body_limit(method: str, path: str, upload_max_bytes: int) -> int:
    """The most body bytes ``method path`` may send."""
    if method == "POST" and path == UPLOADS:
        return upload_max_bytes
    if method == "PUT" and path.startswith(SESSIONS):
        return CHUNK_MAX_BYTES
    return BODY_MAX_BYTES


def too_large(limit: int, what: str) -> str:
    """The refusal sentence."""
    return f"request body {what} is over the {_mib(limit)} this route accepts"


async def _linger(receive: Receive, seconds: float) -> None:
    """Read and discard the request's body until it ends, the client leaves, or ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(receive(), left)
        except TimeoutError:
            return
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def _answer(send: Send, receive: Receive, status: int, detail: object) -> None:
    """Send a refusal whole, linger (see the module's docstring), then end it: the
    connection closes."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": True})
    await _linger(receive, LINGER_S)
    await send({"type": "http.response.body", "body": b""})


class RequestGuards:
    """ASGI middleware: refuse NUL in the URL (422) and bodies over the route's limit (413)."""

    def __init__(self, app: ASGIApp, upload_max_bytes: Callable[[], int]) -> None:
        self.app = app
        self.upload_max_bytes = upload_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        if b"%00" in raw or b"%00" in query or b"\x00" in raw + query:
            detail = [
                {
                    "type": "value_error",
                    "loc": ["query" if b"%00" in query else "path"],
                    "msg": "the URL must not contain a NUL character (%00)",
                }
            ]
            await _answer(send, receive, 422, detail)
            return
        limit = body_limit(scope["method"], scope["path"], self.upload_max_bytes())
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _answer(send, receive, 413, too_large(limit, f"of {int(declared)} bytes"))
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(too_large(limit, "streamed"))
            return message

        await self.app(scope, counted, send)
