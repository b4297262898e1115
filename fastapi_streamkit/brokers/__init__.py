"""Brokers: the `Broker` protocol, the embedded `MemoryBroker` and `RedisBroker`.

`RedisBroker` is imported on first use: it needs the optional ``[redis]`` extra.
"""

from typing import TYPE_CHECKING

from .base import Broker as Broker
from .base import Message as Message
from .base import Subscription as Subscription
from .memory import MemoryBroker as MemoryBroker

if TYPE_CHECKING:
    from .redis import RedisBroker as RedisBroker

__all__ = ["Broker", "MemoryBroker", "Message", "RedisBroker", "Subscription"]


def __getattr__(name: str) -> object:
    """Import `RedisBroker` lazily, so redis-py is only needed by those who use it."""
    if name == "RedisBroker":
        from .redis import RedisBroker

        return RedisBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
