"""One subscriber of a `StreamRouter`: its record and its consume loop.

A consumer handles one message at a time, to the end: ``1 + max_retries`` attempts at once
(a validation failure is not retried), then the return value goes to the publisher topics, or
the message goes to ``<topic>.dlq`` with an ``x-error`` header; then the message is acked.
While a message is being handled its work is shielded from shutdown, up to the drain timeout.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError

from .brokers._topics import TopicPattern
from .brokers.base import Broker, Message
from .codecs import json_encode
from .messages import MessageSession, StreamMessage

__all__ = ["Consumer", "Handled", "Subscriber", "encode_body"]

logger = logging.getLogger("fastapi_streamkit.router")

Observer = Callable[["Handled"], None]


def encode_body(body: Any) -> bytes:
    """Bytes as they are, ``str`` as UTF-8, anything else as JSON."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    return json_encode(body)


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A registered subscriber: what it consumes, as which group, and where results go."""

    topic: str
    group: str | None
    broadcast: bool
    max_retries: int
    handler: Callable[..., Any]
    publishes: tuple[str, ...]
    dependant: Any = field(repr=False, compare=False)
    session: MessageSession = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        """The handler's qualified name, ``module.qualname``."""
        return f"{self.handler.__module__}.{self.handler.__qualname__}"

    def with_publishes(self, publishes: tuple[str, ...]) -> Subscriber:
        """A copy that publishes its results to ``publishes``."""
        return replace(self, publishes=publishes)


@dataclass(frozen=True, slots=True)
class Handled:
    """How one subscriber handled one delivered message."""

    subscriber: Subscriber
    message: Message
    attempts: int
    result: Any = None
    error: BaseException | None = None
    published: tuple[Message, ...] = ()
    dead_letter: Message | None = None


def _x_error(exc: BaseException) -> str:
    error: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, RequestValidationError):
        error["errors"] = jsonable_encoder(exc.errors())
    return json_encode(error).decode()


class Consumer:
    """Consumes one subscription until stopped; a message being handled finishes first."""

    def __init__(
        self, subscriber: Subscriber, broker: Broker, session: MessageSession, notify: Observer
    ) -> None:
        self.subscriber = subscriber
        self._broker = broker
        self._session = session
        self._notify = notify
        self._pattern = TopicPattern(subscriber.topic)
        self._stopping = False
        self._busy = False
        self._scope = anyio.CancelScope()
        self.done = anyio.Event()

    def stop(self) -> None:
        """Take no new message; the one being handled (if any) finishes first."""
        self._stopping = True
        if not self._busy:
            self._scope.cancel()  # only a wait for the next message is cancelled

    def abort(self) -> None:
        """Cancel the message being handled too (the drain timeout ran out)."""
        self._stopping = True
        self._scope.cancel()

    async def run(self, messages: AsyncIterator[Message]) -> None:
        """Handle the messages of ``messages`` one by one until stopped or exhausted.

        One cancel scope for the whole loop (none per message): `stop` cancels it only while
        the consumer waits for a message, so a message being handled is never cancelled by
        it; a message received but not yet handled stays unacked (a group redelivers it).
        """
        try:
            with self._scope:
                while not self._stopping:
                    message = await anext(messages, None)
                    if message is None:
                        break
                    self._busy = True
                    await self._handle(message)
                    self._busy = False
        finally:
            self.done.set()
            aclose = getattr(messages, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    async def handle(self, message: Message) -> Handled:
        """Run the handler with retries; publish its result or dead-letter the message."""
        sub, attempts = self.subscriber, 0
        error: Exception | None = None
        path = self._pattern.match(message.topic)
        for attempts in range(1, sub.max_retries + 2):
            request = StreamMessage(message.body, message.headers, path, topic=message.topic)
            try:
                async with self._session.open(request) as result:
                    published = await self._publish_result(result)  # before teardown
            except RequestValidationError as exc:
                error = exc
                break
            except Exception as exc:
                error = exc
                logger.warning(
                    "%s failed on %s (attempt %d of %d): %r",
                    sub.name,
                    message.topic,
                    attempts,
                    sub.max_retries + 1,
                    exc,
                )
                continue
            return Handled(sub, message, attempts, result, published=published)
        assert error is not None
        headers = {**message.headers, "x-error": _x_error(error)}
        dead = await self._publish(f"{message.topic}.dlq", message.body, headers)
        logger.error(
            "%s dead-lettered %s from %s to %s.dlq: %r",
            sub.name,
            message.id,
            message.topic,
            message.topic,
            error,
            exc_info=None if isinstance(error, RequestValidationError) else error,
        )
        return Handled(sub, message, attempts, error=error, dead_letter=dead)

    async def _handle(self, message: Message) -> None:
        try:
            handled = await self.handle(message)
            if message.group is not None:
                await self._broker.ack(message)
        except Exception:  # the broker failed: not acked, so a group redelivers it later
            logger.exception("%s could not finish %s", self.subscriber.name, message.id)
            return
        self._notify(handled)

    async def _publish_result(self, result: Any) -> tuple[Message, ...]:
        if result is None or not self.subscriber.publishes:
            return ()
        body = encode_body(result)
        return tuple([await self._publish(topic, body) for topic in self.subscriber.publishes])

    async def _publish(
        self, topic: str, body: bytes, headers: dict[str, str] | None = None
    ) -> Message:
        message_id = await self._broker.publish(topic, body, headers=headers)
        return Message(message_id, topic, body, dict(headers or {}))
