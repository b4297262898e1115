"""What every broker is: the `Broker` protocol and the `Message` it delivers.

Brokers never import FastAPI: they move bytes with headers between publishers and subscribers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = ["Broker", "Message", "Subscription"]


@dataclass(frozen=True, slots=True)
class Message:
    """One delivered message; ``attempt`` is 1 on the first delivery, counting redeliveries."""

    id: str
    topic: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict, hash=False)  # hashable message
    group: str | None = None
    attempt: int = 1


class Subscription(Protocol):
    """What `Broker.subscribe` returns: an async iterator of messages that can be closed."""

    def __aiter__(self) -> Subscription: ...

    async def __anext__(self) -> Message: ...

    async def aclose(self) -> None:
        """Stop the subscription and release what it holds; idempotent."""


@runtime_checkable
class Broker(Protocol):
    """A message broker: publish to topics, subscribe alone (broadcast) or as a group."""

    async def start(self) -> None:
        """Connect; calling it again on a started broker does nothing."""

    async def close(self) -> None:
        """Stop every subscription and disconnect; idempotent."""

    async def ping(self) -> bool:
        """True when the broker answers; False when unreachable (never raises)."""

    async def publish(
        self, topic: str, body: bytes, *, headers: dict[str, str] | None = None
    ) -> str:
        """Append a message to ``topic`` and return its id."""

    def subscribe(
        self, topic: str, *, group: str | None = None, last_id: str | None = None
    ) -> Subscription:
        """Iterate the messages of ``topic`` (a name or a ``{param}`` pattern).

        ``group=None`` is broadcast: every subscriber gets every message after ``last_id``
        (None: only new ones). With a group, each message goes to one member until acked.
        """

    async def ack(self, message: Message) -> None:
        """Mark a group message as handled, so it is never redelivered."""
