"""The bus interface and the failure policy every implementation shares."""

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from pulmogate.common.events import Event

Handler = Callable[[Event], Awaitable[None]]

EXCHANGE = "pulmogate"
MAX_HANDLER_ATTEMPTS = 3
RETRY_DELAYS_S = (1.0, 5.0)

log = structlog.get_logger("pulmogate.bus")


@dataclass(frozen=True)
class DeadLetter:
    """A message its consumer failed on every attempt, with the reason."""

    queue: str
    routing_key: str
    body: bytes
    error: str


class Bus(abc.ABC):
    """Publish events and consume them with ack-after-work semantics.

    A handler that returns means its work is committed: the message is acked.
    A handler that raises is retried (``MAX_HANDLER_ATTEMPTS`` in all, with a
    delay), then the message goes to the queue's dead-letter queue with the error.
    """

    # False when messages live only in this process: whatever was in flight when a
    # previous process died is gone, and reconciliation at start must redo all of it.
    durable: bool = True

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections and declare the topology."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop consumers and close connections."""

    @abc.abstractmethod
    async def publish_raw(
        self, routing_key: str, body: bytes, *, delay_s: float = 0.0, attempt: int = 1
    ) -> None:
        """Publish a serialised event, persistently and confirmed."""

    @abc.abstractmethod
    async def subscribe(
        self, queue: str, routing_keys: list[str], handler: Handler, *, prefetch: int = 1
    ) -> None:
        """Consume ``routing_keys`` from the durable ``queue``."""

    @abc.abstractmethod
    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        """Messages parked in ``queue``'s dead-letter queue (not removed)."""

    @abc.abstractmethod
    async def requeue_dead_letters(self, queue: str) -> int:
        """Move ``queue``'s parked messages back to it (attempts start again); return count."""

    @abc.abstractmethod
    async def queue_depths(self) -> dict[str, int]:
        """Ready messages per known queue."""

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the broker is reachable."""

    async def publish(self, event: Event, *, delay_s: float = 0.0) -> None:
        """Publish one event."""
        await self.publish_raw(event.routing_key, event.model_dump_json().encode(), delay_s=delay_s)

    async def handle_failure(
        self, queue: str, routing_key: str, body: bytes, attempt: int, error: BaseException
    ) -> None:
        """Retry a failed message later, or park it in the dead-letter queue."""
        reason = f"{type(error).__name__}: {error}"
        if attempt < MAX_HANDLER_ATTEMPTS:
            delay = RETRY_DELAYS_S[min(attempt - 1, len(RETRY_DELAYS_S) - 1)]
            log.warning("handler failed, will retry", queue=queue, attempt=attempt, error=reason)
            await self.retry(queue, routing_key, body, attempt + 1, delay)
        else:
            log.error("handler failed, dead-lettered", queue=queue, attempt=attempt, error=reason)
            await self.dead_letter(queue, routing_key, body, reason)

    @abc.abstractmethod
    async def retry(
        self, queue: str, routing_key: str, body: bytes, attempt: int, delay_s: float
    ) -> None:
        """Put a message back for ``queue`` only, after ``delay_s``."""

    @abc.abstractmethod
    async def dead_letter(self, queue: str, routing_key: str, body: bytes, reason: str) -> None:
        """Park a message with its reason."""
