"""In-process bus for the embedded mode (the DB outbox and reconciliation give durability)."""

import asyncio
import contextlib
from collections import defaultdict

import structlog

from pulmogate.common.bus.base import Bus, DeadLetter, Handler

log = structlog.get_logger("pulmogate.bus")

Message = tuple[str, bytes, int]


class MemoryBus(Bus):
    """Queues are asyncio queues; bindings are exact routing keys."""

    durable = False

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[Message]] = {}
        self._bindings: dict[str, set[str]] = defaultdict(set)
        self._dead: dict[str, list[DeadLetter]] = defaultdict(list)
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    async def connect(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Cancel consumers and pending delayed messages."""
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _queue(self, name: str) -> asyncio.Queue[Message]:
        return self._queues.setdefault(name, asyncio.Queue())

    def _later(self, delay_s: float, callback: object, *args: object) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            callback(*args)  # type: ignore[operator]

        handle = loop.call_later(delay_s, fire)
        self._timers.add(handle)

    def _route(self, routing_key: str, body: bytes, attempt: int) -> None:
        for queue, keys in self._bindings.items():
            if routing_key in keys:
                self._queue(queue).put_nowait((routing_key, body, attempt))

    async def publish_raw(
        self, routing_key: str, body: bytes, *, delay_s: float = 0.0, attempt: int = 1
    ) -> None:
        """Deliver to every bound queue, now or after ``delay_s``."""
        if delay_s > 0:
            self._later(delay_s, self._route, routing_key, body, attempt)
        else:
            self._route(routing_key, body, attempt)

    async def subscribe(
        self, queue: str, routing_keys: list[str], handler: Handler, *, prefetch: int = 1
    ) -> None:
        """Start ``prefetch`` workers on the queue."""
        self._bindings[queue].update(routing_keys)
        for _ in range(prefetch):
            task = asyncio.create_task(self._consume(queue, handler))
            self._tasks.add(task)

    async def _consume(self, queue: str, handler: Handler) -> None:
        from pulmogate.common.events import decode_event

        q = self._queue(queue)
        while True:
            routing_key, body, attempt = await q.get()
            try:
                await handler(decode_event(routing_key, body))
            except asyncio.CancelledError:
                q.put_nowait((routing_key, body, attempt))
                raise
            except Exception as exc:
                await self.handle_failure(queue, routing_key, body, attempt, exc)

    async def retry(
        self, queue: str, routing_key: str, body: bytes, attempt: int, delay_s: float
    ) -> None:
        """Requeue for this queue only."""
        self._later(delay_s, self._queue(queue).put_nowait, (routing_key, body, attempt))

    async def dead_letter(self, queue: str, routing_key: str, body: bytes, reason: str) -> None:
        """Keep it in memory for inspection."""
        self._dead[queue].append(DeadLetter(queue, routing_key, body, reason))

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        """Parked messages."""
        return list(self._dead[queue])

    async def requeue_dead_letters(self, queue: str) -> int:
        """Back to the queue, first attempt."""
        parked, self._dead[queue] = self._dead[queue], []
        for letter in parked:
            self._queue(queue).put_nowait((letter.routing_key, letter.body, 1))
        return len(parked)

    async def queue_depths(self) -> dict[str, int]:
        """Messages waiting per queue."""
        return {name: q.qsize() for name, q in self._queues.items()}

    async def ping(self) -> bool:
        """Always reachable."""
        return True
