"""The api service: uvicorn serving the app on settings.api_host:settings.api_port."""

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import structlog
import uvicorn

from pulmogate.api.app import create_app
from pulmogate.common.runtime import Context
from pulmogate.common.users import ensure_first_admin, has_users

log = structlog.get_logger("pulmogate.api")

STOP_TIMEOUT_S = 10.0


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the runtime owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave signals alone."""
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 picks a free one); raises OSError if taken."""
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class ApiService:
    """REST API, health checks and metrics."""

    name = "api"

    def __init__(self) -> None:
        self.server: uvicorn.Server | None = None
        self.port: int | None = None
        self._socket: socket.socket | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, ctx: Context) -> None:
        """Bind the port, start uvicorn as a context task and wait until it accepts."""
        settings = ctx.settings
        await ensure_first_admin(ctx.db, settings)
        if not await has_users(ctx.db):
            log.warning(
                "no users yet: create an admin with `pulmogate user create --admin NAME` "
                "or set PULMOGATE_ADMIN_USERNAME and PULMOGATE_ADMIN_PASSWORD"
            )
        self._socket = bind_socket(settings.api_host, settings.api_port)
        self.port = self._socket.getsockname()[1]
        app = create_app(ctx)
        await asyncio.to_thread(app.state.db_reserve.keep)
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(config)
        self._task = ctx.spawn(self._serve(), "api-server")
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("api server stopped during startup")
            await asyncio.sleep(0.01)
        log.info("api listening", host=settings.api_host, port=self.port)

    async def _serve(self) -> None:
        """Run uvicorn; its startup failures become errors instead of SystemExit."""
        assert self.server is not None and self._socket is not None
        try:
            await self.server.serve(sockets=[self._socket])
        except SystemExit as exc:
            raise RuntimeError(f"api server exited with status {exc.code}") from None

    async def stop(self) -> None:
        """Ask uvicorn to finish open requests and wait for it."""
        if self.server is not None:
            self.server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_TIMEOUT_S)
            except TimeoutError:
                assert self.server is not None
                self.server.force_exit = True
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
