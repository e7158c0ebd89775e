"""The message bus: RabbitMQ in production, an in-process bus in the embedded mode."""

from pulmogate.common.bus.base import Bus, DeadLetter, Handler
from pulmogate.common.bus.factory import make_bus

__all__ = ["Bus", "DeadLetter", "Handler", "make_bus"]
