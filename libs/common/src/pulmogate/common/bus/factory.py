"""Pick the bus implementation from the broker URL."""

from pulmogate.common.bus.base import Bus


def make_bus(url: str) -> Bus:
    """``memory://`` for the embedded mode, ``amqp://`` for RabbitMQ."""
    if url.startswith("memory:"):
        from pulmogate.common.bus.memory import MemoryBus

        return MemoryBus()
    if url.startswith(("amqp://", "amqps://")):
        from pulmogate.common.bus.rabbitmq import RabbitBus

        return RabbitBus(url)
    raise ValueError(f"unsupported broker URL scheme in {url.split('://')[0]!r}")
