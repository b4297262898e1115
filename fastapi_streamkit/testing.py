"""Helpers for your own tests: run an app's message handlers and await what they did.

``async with TestStreamApp(app) as stream:`` starts the app's lifespan (brokers, consumers,
hooks, sub-apps), then ``handled = await stream.publish_and_wait(topic, body)`` publishes a
message and returns how its subscriber handled it: the handler's ``result``, the messages it
``published``, its ``dead_letter``, the ``error`` and the number of ``attempts``. Every wait is
bounded by a timeout. ``TestStreamApp(app, lifespan=False)`` calls the handlers directly,
without starting anything, with the app's ``dependency_overrides``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

import anyio
from fastapi import FastAPI

from . import _compat
from ._asgi_lifespan import SubAppLifespan
from ._subscriber import Consumer, Handled, Subscriber, encode_body
from .brokers._topics import TopicPattern
from .brokers.base import Message
from .brokers.memory import MemoryBroker
from .exceptions import UsageError
from .messages import StreamMessage
from .router import StreamRouter

__all__ = ["Handled", "TestStreamApp"]


def _stream_routers(app: FastAPI) -> tuple[StreamRouter, ...]:
    """Every `StreamRouter` included in ``app`` (directly or through other routers), once."""
    routers = _compat.included_routers(app.routes)
    return tuple(router for router in routers if isinstance(router, StreamRouter))


def _handled_by(sub: Subscriber, message_id: str) -> Callable[[Handled], bool]:
    def predicate(handled: Handled) -> bool:
        other = handled.subscriber
        return handled.message.id == message_id and (
            other.handler is sub.handler and (other.topic, other.group) == (sub.topic, sub.group)
        )

    return predicate


class TestStreamApp:
    """Runs an app's message handlers in an async test and waits, bounded, on their outcome."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: FastAPI, *, lifespan: bool = True, timeout: float = 5.0) -> None:
        self.app = app
        self.timeout = timeout
        self._use_lifespan = lifespan
        self._routers: tuple[StreamRouter, ...] = ()
        self._lifespan: SubAppLifespan | None = None
        self._direct: list[tuple[StreamRouter, Consumer]] = []
        self._capture = MemoryBroker()
        self._handled: list[Handled] = []
        self._changed: anyio.Event | None = None

    @property
    def routers(self) -> tuple[StreamRouter, ...]:
        """The app's `StreamRouter`s, found when the helper was entered."""
        return self._routers

    @property
    def handled(self) -> tuple[Handled, ...]:
        """Every message handled since the helper was entered, in order."""
        return tuple(self._handled)

    async def __aenter__(self) -> TestStreamApp:
        self._routers = _stream_routers(self.app)
        if not self._routers:
            raise UsageError(
                "TestStreamApp found no StreamRouter in the app: include one first with "
                "app.include_router(router)"
            )
        for router in self._routers:
            router._observers.append(self._record)
        try:
            if self._use_lifespan:
                drain = max(router.drain_timeout for router in self._routers)
                self._lifespan = SubAppLifespan(
                    self.app,
                    label="the app under test",
                    startup_timeout=self.timeout,
                    shutdown_timeout=self.timeout + drain,
                )
                await self._lifespan.startup()
            else:
                await self._capture.start()
                self._direct = list(self._direct_consumers())
        except BaseException:
            self._detach()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._lifespan is not None:
                await self._lifespan.shutdown()
            await self._capture.close()
        finally:
            self._detach()

    def _detach(self) -> None:
        for router in self._routers:
            if self._record in router._observers:
                router._observers.remove(self._record)

    def _direct_consumers(self) -> Iterator[tuple[StreamRouter, Consumer]]:
        for router in self._routers:
            for sub in router.subscribers:
                session = StreamMessage.get_session(sub.dependant, lambda: self.app)
                yield router, Consumer(sub, self._capture, session, self._record)

    def _record(self, handled: Handled) -> None:
        self._handled.append(handled)
        if self._changed is not None:  # someone waits
            self._changed.set()
            self._changed = None

    def _matching(self, topic: str) -> list[tuple[StreamRouter, Subscriber]]:
        return [
            (router, sub)
            for router in self._routers
            for sub in router.subscribers
            if TopicPattern(sub.topic).matches(topic)
        ]

    async def publish(
        self, topic: str, body: Any, *, headers: Mapping[str, str] | None = None
    ) -> str:
        """Publish like `StreamRouter.publish`, through the broker of a matching subscriber."""
        if not self._use_lifespan:
            return (await self._dispatch(topic, body, headers))[0]
        matching = self._matching(topic)
        router = matching[0][0] if matching else self._routers[0]
        return await router.publish(topic, body, headers=headers)

    async def publish_and_wait(
        self,
        topic: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a test helper's bound
    ) -> Handled:
        """Publish, then return how the one subscriber of ``topic`` handled the message."""
        matching = self._matching(topic)
        if len(matching) != 1:
            names = [sub.name for _, sub in matching] or ["none"]
            raise UsageError(
                f"publish_and_wait({topic!r}) expects exactly one matching subscriber, found "
                f"{len(matching)} ({', '.join(names)}); use publish_and_wait_all() instead"
            )
        return (await self.publish_and_wait_all(topic, body, headers=headers, timeout=timeout))[0]

    async def publish_and_wait_all(
        self,
        topic: str,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a test helper's bound
    ) -> list[Handled]:
        """Publish, then return how every matching subscriber handled it (registration order)."""
        matching = self._matching(topic)
        if not matching:
            raise UsageError(f"no subscriber of the app matches topic {topic!r}; {self._known()}")
        if not self._use_lifespan:
            return (await self._dispatch(topic, body, headers))[1]
        router = matching[0][0]
        message_id = await router.publish(topic, body, headers=headers)
        results = []
        for _, sub in matching:
            results.append(
                await self.wait_handled(
                    _handled_by(sub, message_id),
                    timeout=timeout,
                    what=f"{sub.name} to handle message {message_id} on {topic!r}",
                )
            )
        return results

    async def wait_handled(
        self,
        match: str | Callable[[Handled], bool],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a test helper's bound
        what: str | None = None,
    ) -> Handled:
        """The first message handled since entry on topic ``match`` (or passing ``match``)."""
        predicate: Callable[[Handled], bool]
        if isinstance(match, str):
            topic = match
            what = what or f"a message on {topic!r} to be handled"
            predicate = lambda handled: handled.message.topic == topic  # noqa: E731
        else:
            predicate = match
            what = what or "a handled message that passes the predicate"
        limit = self.timeout if timeout is None else timeout
        with anyio.move_on_after(limit):
            while True:
                for handled in self._handled:
                    if predicate(handled):
                        return handled
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()
        seen = ", ".join(f"{h.subscriber.name}<-{h.message.topic}" for h in self._handled)
        raise TimeoutError(
            f"waited {limit} s for {what}; handled so far: {seen or 'nothing'}. "
            "Is the topic right, and did the app start (TestStreamApp entered)?"
        )

    async def _dispatch(
        self, topic: str, body: Any, headers: Mapping[str, str] | None
    ) -> tuple[str, list[Handled]]:
        """Without lifespan: hand the message to each matching handler, in this task."""
        raw, plain = encode_body(body), dict(headers or {})
        message_id = await self._capture.publish(topic, raw, headers=plain)
        results = []
        for _, consumer in self._direct:
            sub = consumer.subscriber
            if TopicPattern(sub.topic).matches(topic):
                message = Message(message_id, topic, raw, dict(plain), sub.group, 1)
                handled = await consumer.handle(message)
                self._record(handled)
                results.append(handled)
        return message_id, results

    def _known(self) -> str:
        topics = [sub.topic for router in self._routers for sub in router.subscribers]
        return f"subscribed topics: {', '.join(topics) or 'none'}"
