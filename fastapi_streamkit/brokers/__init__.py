"""Brokers: the `Broker` protocol, the embedded `MemoryBroker` and `RedisBroker`."""

from .base import Broker as Broker
from .base import Message as Message
from .memory import MemoryBroker as MemoryBroker

__all__ = ["Broker", "MemoryBroker", "Message"]
