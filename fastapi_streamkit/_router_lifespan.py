"""The lifespan of a `StreamRouter`, as the parts `lifespan.run_parts` sequences.

Startup: before_startup hooks -> broker start -> consumers subscribed -> sub-apps in mount
order -> after_startup hooks. Shutdown in reverse: before_shutdown hooks -> sub-apps reversed
-> consumers drained (up to ``drain_timeout``) -> broker close -> after_shutdown hooks.

FastAPI's ``include_router`` nests the router's ``lifespan_context`` into the parent's on every
include, so `RouterLifespan` runs the parts only in the outermost of the nested calls for one
app; the others are no-ops.

Several routers may share one broker (``StreamRouter(broker=shared)``). Their lifespans nest, so
the broker belongs to the outermost one that uses it: it starts it first and closes it last,
after every router's in-flight handlers drained. The brokers already running are kept in a
context variable, which the nested lifespans (same task) and sub-apps' tasks inherit.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ._subscriber import Consumer
from .brokers.base import Broker, Message
from .lifespan import CallbackPart, LifespanPart, run_parts

if TYPE_CHECKING:
    from .router import StreamRouter

__all__ = ["Hooks", "RouterLifespan"]

logger = logging.getLogger("fastapi_streamkit.router")

LifespanContext = Callable[[Any], AbstractAsyncContextManager[Mapping[str, Any] | None]]

_RUNNING_BROKERS: ContextVar[tuple[Broker, ...]] = ContextVar(
    "fastapi_streamkit_running_brokers", default=()
)
"""The brokers started by an enclosing router lifespan: a nested router leaves them alone."""


@dataclass(slots=True)
class Hooks:
    """The router's four hook lists, in registration order."""

    before_startup: list[Callable[[], Any]] = field(default_factory=list)
    after_startup: list[Callable[[], Any]] = field(default_factory=list)
    before_shutdown: list[Callable[[], Any]] = field(default_factory=list)
    after_shutdown: list[Callable[[], Any]] = field(default_factory=list)


class _BrokerPart:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.label = f"broker {broker!r}"

    async def startup(self) -> None:
        await self._broker.start()

    async def shutdown(self) -> None:
        await self._broker.close()


class _ConsumersPart:
    """One `Consumer` task per subscriber; shutdown lets in-flight handlers finish first."""

    def __init__(self, router: StreamRouter, task_group: TaskGroup) -> None:
        self.label = "the router's consumers"
        self._router = router
        self._task_group = task_group
        self._consumers: list[Consumer] = []

    async def startup(self) -> None:
        router = self._router
        try:
            for sub in router.subscribers:
                consumer = Consumer(sub, router.broker, sub.session, router._notify)
                messages = router.broker.subscribe(sub.topic, group=sub.group)
                self._consumers.append(consumer)
                self._task_group.start_soon(_guarded, consumer, messages)
        except BaseException:
            await self._stop(0)
            raise

    async def shutdown(self) -> None:
        await self._stop(self._router.drain_timeout)

    async def _stop(self, drain: float) -> None:
        with anyio.CancelScope(shield=True):
            for consumer in self._consumers:
                consumer.stop()
            with anyio.move_on_after(drain):
                for consumer in self._consumers:
                    await consumer.done.wait()
            busy = [c.subscriber.name for c in self._consumers if not c.done.is_set()]
            if busy:
                logger.warning(
                    "drain_timeout (%s s) ran out with handlers still running, cancelled: %s",
                    drain,
                    ", ".join(busy),
                )
                for consumer in self._consumers:
                    consumer.abort()
                for consumer in self._consumers:
                    await consumer.done.wait()
            self._consumers.clear()


async def _guarded(consumer: Consumer, messages: AsyncIterator[Message]) -> None:
    """A consumer task never raises: that would cancel the app's lifespan task."""
    try:
        await consumer.run(messages)
    except Exception:
        logger.exception("the consumer of %s stopped", consumer.subscriber.name)


@asynccontextmanager
async def _task_group() -> AsyncIterator[TaskGroup]:
    """A task group for the consumers that lets the lifespan's own error out unwrapped."""
    try:
        async with anyio.create_task_group() as task_group:
            yield task_group
    except BaseExceptionGroup as group:  # consumers never raise: this is the host's error
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from group.exceptions[0].__cause__
        raise


class RouterLifespan:
    """``StreamRouter.lifespan_context``: the router's parts, once per app lifespan cycle."""

    def __init__(self, router: StreamRouter, inner: LifespanContext | None) -> None:
        self._router = router
        self._inner = inner
        self._apps: list[Any] = []

    def __call__(self, app: Any) -> AbstractAsyncContextManager[Mapping[str, Any] | None]:
        return self._cycle(app)

    @asynccontextmanager
    async def _cycle(self, app: Any) -> AsyncIterator[Mapping[str, Any] | None]:
        if any(running is app for running in self._apps):
            yield None  # a nested include of the same router: the outermost one runs it
            return
        self._apps.append(app)
        running = _RUNNING_BROKERS.get()
        owns_broker = not any(broker is self._router.broker for broker in running)
        if owns_broker:
            _RUNNING_BROKERS.set((*running, self._router.broker))
        try:
            async with AsyncExitStack() as stack:
                state = None
                if self._inner is not None:
                    state = await stack.enter_async_context(self._inner(app))
                self._router._app = app
                task_group = await stack.enter_async_context(_task_group())
                parts = self._parts(task_group, owns_broker=owns_broker)
                await stack.enter_async_context(run_parts(parts))
                yield state
        finally:
            self._apps.remove(app)
            if owns_broker:
                _RUNNING_BROKERS.set(running)

    def _parts(self, task_group: TaskGroup, *, owns_broker: bool) -> list[LifespanPart]:
        router, hooks = self._router, self._router.hooks
        broker = [_BrokerPart(router.broker)] if owns_broker else []
        return [
            CallbackPart(
                "before_startup/after_shutdown hooks",
                startup=hooks.before_startup,
                shutdown=hooks.after_shutdown,
            ),
            *broker,
            _ConsumersPart(router, task_group),
            *router.mounts,
            CallbackPart(
                "after_startup/before_shutdown hooks",
                startup=hooks.after_startup,
                shutdown=hooks.before_shutdown,
            ),
        ]
