"""RabbitMQ bus (aio-pika): durable topic exchange and queues, persistent confirmed messages."""

import asyncio
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from pulmogate.common.bus.base import EXCHANGE, Bus, DeadLetter, Handler
from pulmogate.common.events import decode_event

log = structlog.get_logger("pulmogate.bus")

ATTEMPT_HEADER = "x-pulmogate-attempt"
ERROR_HEADER = "x-pulmogate-error"
ROUTING_KEY_HEADER = "x-pulmogate-routing-key"


def dead_letter_queue(queue: str) -> str:
    """Name of the queue where ``queue``'s poison messages are parked."""
    return f"{queue}.dead"


class RabbitBus(Bus):
    """Production bus; every message is persistent and every publish is confirmed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._queues: set[str] = set()
        self._delay_queues: set[str] = set()
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        """Connect (robust: reconnects and restores consumers) and declare the exchange."""
        self._conn = await aio_pika.connect_robust(self.url, timeout=10)
        self._channel = await self._conn.channel(publisher_confirms=True)
        self._exchange = await self._channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def close(self) -> None:
        """Close the connection (unacked messages go back to their queues)."""
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def channel(self) -> AbstractChannel:
        assert self._channel is not None, "bus not connected"
        return self._channel

    @staticmethod
    def _message(
        body: bytes, attempt: int, extra: dict[str, Any] | None = None
    ) -> aio_pika.Message:
        headers: dict[str, Any] = {ATTEMPT_HEADER: attempt, **(extra or {})}
        return aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers,
        )

    async def _delay_queue(self, target_exchange: str, routing_key: str, delay_s: float) -> str:
        """A TTL queue that dead-letters back to ``routing_key`` after ``delay_s``."""
        ms = max(1, int(delay_s * 1000))
        name = f"pulmogate.delay.{routing_key}.{ms}"
        async with self._lock:
            if name not in self._delay_queues:
                await self.channel.declare_queue(
                    name,
                    durable=True,
                    arguments={
                        "x-message-ttl": ms,
                        "x-dead-letter-exchange": target_exchange,
                        "x-dead-letter-routing-key": routing_key,
                    },
                )
                self._delay_queues.add(name)
        return name

    async def publish_raw(
        self, routing_key: str, body: bytes, *, delay_s: float = 0.0, attempt: int = 1
    ) -> None:
        """Publish to the topic exchange, directly or through a delay queue."""
        assert self._exchange is not None, "bus not connected"
        message = self._message(body, attempt)
        if delay_s > 0:
            queue = await self._delay_queue(EXCHANGE, routing_key, delay_s)
            await self.channel.default_exchange.publish(message, routing_key=queue)
        else:
            await self._exchange.publish(message, routing_key=routing_key)

    async def subscribe(
        self, queue: str, routing_keys: list[str], handler: Handler, *, prefetch: int = 1
    ) -> None:
        """Consume on a channel of its own with ``prefetch`` unacked messages at most."""
        assert self._conn is not None, "bus not connected"
        channel = await self._conn.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=prefetch)
        await channel.declare_queue(dead_letter_queue(queue), durable=True)
        q = await channel.declare_queue(queue, durable=True)
        exchange = await channel.declare_exchange(
            EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        for key in routing_keys:
            await q.bind(exchange, routing_key=key)
        self._queues.add(queue)

        async def on_message(message: AbstractIncomingMessage) -> None:
            headers = message.headers or {}
            attempt = int(str(headers.get(ATTEMPT_HEADER, 1)))
            routing_key = str(headers.get(ROUTING_KEY_HEADER, message.routing_key or ""))
            try:
                event = decode_event(routing_key, message.body)
                await handler(event)
            except Exception as exc:
                await self.handle_failure(queue, routing_key, message.body, attempt, exc)
            await message.ack()

        await q.consume(on_message)

    async def retry(
        self, queue: str, routing_key: str, body: bytes, attempt: int, delay_s: float
    ) -> None:
        """Back to ``queue`` only, via a delay queue on the default exchange."""
        ms = max(1, int(delay_s * 1000))
        name = f"pulmogate.retry.{queue}.{ms}"
        async with self._lock:
            if name not in self._delay_queues:
                await self.channel.declare_queue(
                    name,
                    durable=True,
                    arguments={
                        "x-message-ttl": ms,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": queue,
                    },
                )
                self._delay_queues.add(name)
        message = self._message(body, attempt, {ROUTING_KEY_HEADER: routing_key})
        await self.channel.default_exchange.publish(message, routing_key=name)

    async def dead_letter(self, queue: str, routing_key: str, body: bytes, reason: str) -> None:
        """Park the message in ``<queue>.dead`` with the reason and original key in headers."""
        message = self._message(
            body, 0, {ERROR_HEADER: reason[:2000], ROUTING_KEY_HEADER: routing_key}
        )
        await self.channel.default_exchange.publish(message, routing_key=dead_letter_queue(queue))

    async def dead_letters(self, queue: str) -> list[DeadLetter]:
        """Peek at parked messages (fetched and requeued, so nothing is removed)."""
        channel = await self._conn.channel() if self._conn else self.channel
        try:
            q = await channel.declare_queue(dead_letter_queue(queue), durable=True)
            found: list[DeadLetter] = []
            held: list[AbstractIncomingMessage] = []
            while (message := await q.get(fail=False, no_ack=False)) is not None:
                headers = message.headers or {}
                found.append(
                    DeadLetter(
                        queue,
                        str(headers.get(ROUTING_KEY_HEADER, "")),
                        message.body,
                        str(headers.get(ERROR_HEADER, "")),
                    )
                )
                held.append(message)
            for message in held:
                await message.nack(requeue=True)
            return found
        finally:
            await channel.close()

    async def requeue_dead_letters(self, queue: str) -> int:
        """Republish each parked message to ``queue`` (attempt 1), then remove it from the
        dead-letter queue: a crash in between leaves a copy in both (at-least-once)."""
        assert self._conn is not None, "bus not connected"
        channel = await self._conn.channel(publisher_confirms=True)
        try:
            dead = await channel.declare_queue(dead_letter_queue(queue), durable=True)
            moved = 0
            while (message := await dead.get(fail=False, no_ack=False)) is not None:
                headers = message.headers or {}
                routing_key = str(headers.get(ROUTING_KEY_HEADER, ""))
                await channel.default_exchange.publish(
                    self._message(message.body, 1, {ROUTING_KEY_HEADER: routing_key}),
                    routing_key=queue,
                )
                await message.ack()
                moved += 1
            return moved
        finally:
            await channel.close()

    async def queue_depths(self) -> dict[str, int]:
        """Ready messages in each consumed queue and its dead-letter queue."""
        depths: dict[str, int] = {}
        channel = await self._conn.channel() if self._conn else self.channel
        try:
            for name in sorted(self._queues):
                for qname in (name, dead_letter_queue(name)):
                    q = await channel.declare_queue(qname, durable=True, passive=True)
                    depths[qname] = q.declaration_result.message_count or 0
        finally:
            await channel.close()
        return depths

    async def ping(self) -> bool:
        """True when the connection is open."""
        return self._conn is not None and not self._conn.is_closed
