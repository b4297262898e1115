"""Brokers: the `Broker` protocol, the embedded `MemoryBroker` and `RedisBroker`."""

from .base import Broker as Broker
from .base import Message as Message

__all__ = ["Broker", "Message"]
