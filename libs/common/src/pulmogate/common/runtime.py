"""Service lifecycle: build the shared context, start services, relay the outbox, stop cleanly."""

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Protocol

import structlog

from pulmogate.common.bus import Bus, make_bus
from pulmogate.common.db.migrate import upgrade_async
from pulmogate.common.db.session import Database
from pulmogate.common.heartbeat import run_heartbeat
from pulmogate.common.logging import configure_logging
from pulmogate.common.metrics import track_storage
from pulmogate.common.metrics_server import MetricsServer
from pulmogate.common.outbox import OutboxRelay
from pulmogate.common.settings import Settings
from pulmogate.common.storage import Storage

log = structlog.get_logger("pulmogate.runtime")


@dataclass
class Context:
    """What every service gets: settings, database, bus and storage."""

    settings: Settings
    db: Database
    bus: Bus
    storage: Storage
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coro: "asyncio.Future[None] | object", name: str) -> asyncio.Task[None]:
        """Run a background task owned by the context (cancelled on stop)."""
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task died", task=task.get_name(), error=repr(task.exception()))


class Service(Protocol):
    """A service: ``start`` binds and subscribes then returns; ``stop`` releases."""

    name: str

    async def start(self, ctx: Context) -> None: ...

    async def stop(self) -> None: ...


def discover_services() -> dict[str, type[Service]]:
    """Installed services, by name (entry point group ``pulmogate.services``)."""
    return {ep.name: ep.load() for ep in entry_points(group="pulmogate.services")}


SERVICE_ORDER = ("api", "router", "inference", "sender", "receiver")


async def open_context(settings: Settings, *, migrate: bool) -> Context:
    """Connect to the database and the bus (migrating the schema first when asked)."""
    url = settings.effective_database_url
    if migrate:
        await upgrade_async(url)
    bus = make_bus(settings.broker_url)
    await bus.connect()
    return Context(settings, Database(url), bus, Storage(settings.storage_dir))


async def close_context(ctx: Context) -> None:
    """Cancel background tasks, close the bus and the database."""
    for task in list(ctx.tasks):
        task.cancel()
    for task in list(ctx.tasks):
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await ctx.bus.close()
    await ctx.db.dispose()


def _metrics_server(names: list[str], settings: Settings) -> MetricsServer | None:
    """The metrics port of a process without the api (the api serves this registry itself)."""
    if "api" in names or not settings.metrics_port:
        return None
    token = settings.metrics_token.get_secret_value()
    return MetricsServer(settings.metrics_host, settings.metrics_port, token)


async def run_services(
    names: list[str],
    settings: Settings,
    *,
    migrate: bool = False,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the named services in this process until SIGINT/SIGTERM (or ``stop``)."""
    available = discover_services()
    missing = [n for n in names if n not in available]
    if missing:
        raise SystemExit(f"service(s) not installed: {', '.join(missing)}")
    configure_logging(settings.log_level, settings.log_format, service="+".join(names))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    ctx = await open_context(settings, migrate=migrate or settings.database_url == "")
    track_storage(ctx.storage.root)
    metrics = _metrics_server(names, settings)
    started: list[Service] = []
    try:
        if metrics is not None:
            await metrics.start()
        for name in sorted(names, key=lambda n: SERVICE_ORDER.index(n)):
            service = available[name]()
            await service.start(ctx)
            started.append(service)
            log.info("service started", service=name)
        relay = OutboxRelay(ctx.db, ctx.bus)
        ctx.spawn(relay.run(), "outbox-relay")
        ctx.spawn(run_heartbeat(ctx.db, names, settings.liveness_file), "heartbeat")
        await stop.wait()
    finally:
        for service in reversed(started):
            with contextlib.suppress(Exception):
                await service.stop()
        if metrics is not None:
            await metrics.stop()
        await close_context(ctx)
        log.info("stopped", services=names)
