"""``GET /metrics`` of a process that runs no api: this process's registry on ``metrics_port``.

A process serves its metrics once: at the api's ``/metrics`` when it runs the api (``pulmogate
up``, ``pulmogate api``), else here. A deliberately small HTTP/1.1 server on the event loop: one
request per connection, bounded head, a read deadline, the same bearer token as the api.
"""

import asyncio
import contextlib

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pulmogate.common.credentials import same_secret

log = structlog.get_logger("pulmogate.metrics")

MAX_HEAD_BYTES = 8192
READ_TIMEOUT_S = 5.0
PATH = "/metrics"

Answer = tuple[str, str, bytes]


class MetricsServer:
    """Prometheus text at ``http://host:port/metrics`` (401 without the token when one is set)."""

    def __init__(self, host: str, port: int, token: str = "") -> None:
        self.host = host
        self.port = port
        self._token = token
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; a port that cannot be opened stops the process with the reason."""
        try:
            self._server = await asyncio.start_server(
                self._handle, self.host, self.port, limit=MAX_HEAD_BYTES
            )
        except OSError as exc:
            raise SystemExit(
                f"metrics port {self.host}:{self.port} cannot be opened: {exc.strerror or exc}"
            ) from exc
        log.info("metrics served", host=self.host, port=self.port, path=PATH)

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), READ_TIMEOUT_S)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            status, content_type, body = await self._answer(head.decode("latin-1"))
            send_body = not head.startswith(b"HEAD ")
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                + (body if send_body else b"")
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a slow, cut-off or oversized request gets no answer
        except ConnectionError:
            pass  # the scraper went away
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, head: str) -> Answer:
        request_line, *header_lines = head.split("\r\n")
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if method not in {"GET", "HEAD"}:
            return "405 Method Not Allowed", "text/plain", b"only GET /metrics\n"
        if path != PATH:
            return "404 Not Found", "text/plain", b"metrics are at /metrics\n"
        if self._token and not self._authorised(header_lines):
            return (
                "401 Unauthorized",
                "text/plain",
                b"metrics need 'Authorization: Bearer <PULMOGATE_METRICS_TOKEN>'\n",
            )
        # Off the loop: collectors may stat a network volume (the storage gauge).
        body = await asyncio.to_thread(generate_latest)
        return "200 OK", CONTENT_TYPE_LATEST, body

    def _authorised(self, header_lines: list[str]) -> bool:
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "authorization":
                scheme, _, sent = value.strip().partition(" ")
                return scheme.lower() == "bearer" and same_secret(sent.strip(), self._token)
        return False
