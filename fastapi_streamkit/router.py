"""`StreamRouter`: an `APIRouter` that also handles broker messages with FastAPI DI.

``app.include_router(router)`` is the whole set-up: the router's lifespan (broker, consumers,
hooks, mounted sub-apps) runs inside the app's, once per app lifespan cycle however many times
the router is included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from fastapi.responses import JSONResponse, Response
from starlette.types import ASGIApp, Lifespan

from . import _compat
from ._router_lifespan import Hooks, RouterLifespan
from ._subscriber import Handled, encode_body
from ._subscriber import Subscriber as Subscriber
from .asyncapi import add_asyncapi_routes
from .brokers._topics import TopicPattern
from .brokers.base import Broker
from .brokers.memory import MemoryBroker
from .connection import ConnectionRouter
from .exceptions import UsageError
from .lifespan import LifespanMount
from .messages import StreamMessage

__all__ = ["Publisher", "StreamRouter", "Subscriber"]

logger = logging.getLogger("fastapi_streamkit.router")

Handler = TypeVar("Handler", bound=Callable[..., Any])
Hook = TypeVar("Hook", bound=Callable[[], Any])


class Publisher:
    """A registered publisher: the return value of ``handler`` is published to ``topic``."""

    __slots__ = ("handler", "topic")

    def __init__(self, topic: str, handler: Callable[..., Any]) -> None:
        self.topic = topic
        self.handler = handler

    def __repr__(self) -> str:
        return f"Publisher({self.topic!r}, {self.handler.__qualname__})"


class StreamRouter(ConnectionRouter):
    """An `APIRouter` with message subscribers, publishers, a broker and lifespan hooks.

    Its HTTP routes are `StreamRoute`s and its WebSocket routes inject our `WebSocket`
    (``websocket_origins`` refuses handshakes from other origins; see `ConnectionRouter`).
    """

    def __init__(
        self,
        *,
        broker: Broker | None = None,
        group: str | None = None,
        asyncapi_path: str | None = None,
        health_path: str | None = None,
        websocket_origins: Sequence[str] | None = None,
        drain_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        if drain_timeout < 0:
            raise ValueError(f"drain_timeout must be >= 0 seconds, got {drain_timeout!r}")
        super().__init__(websocket_origins=websocket_origins, **kwargs)
        self.broker: Broker = MemoryBroker() if broker is None else broker
        self.group = group
        self.asyncapi_path = asyncapi_path
        self.health_path = health_path
        self.drain_timeout = drain_timeout
        self.hooks = Hooks()
        self._subscribers: list[Subscriber] = []
        self._publishers: list[Publisher] = []
        self._mounts: list[LifespanMount] = []
        self._observers: list[Callable[[Handled], None]] = []
        self._app: Any = None
        user_lifespan = self.lifespan_context if kwargs.get("lifespan") is not None else None
        self.lifespan_context = cast("Lifespan[Any]", RouterLifespan(self, user_lifespan))
        if health_path is not None:
            self.add_api_route(
                health_path,
                self._health,
                methods=["GET"],
                include_in_schema=False,
                name="streamkit_health",
            )
        if asyncapi_path is not None:  # registered once, here: never again per lifespan
            add_asyncapi_routes(self, asyncapi_path)

    # -- registry (read-only views, for AsyncAPI and tests) --------------------------------

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        """Every subscriber, in registration order, with the topics its results go to."""
        return tuple(
            sub.with_publishes(self._publishes_of(sub.handler)) for sub in self._subscribers
        )

    @property
    def publishers(self) -> tuple[Publisher, ...]:
        """Every ``@publisher`` registration, in order."""
        return tuple(self._publishers)

    @property
    def mounts(self) -> tuple[LifespanMount, ...]:
        """The sub-apps mounted with `mount`, in mount order."""
        return tuple(self._mounts)

    def _publishes_of(self, handler: Callable[..., Any]) -> tuple[str, ...]:
        return tuple(p.topic for p in self._publishers if p.handler is handler)

    # -- decorators ---------------------------------------------------------------------

    def subscriber(
        self,
        topic: str,
        *,
        group: str | None = None,
        broadcast: bool = False,
        max_retries: int = 3,
    ) -> Callable[[Handler], Handler]:
        """Handle the messages of ``topic`` (``{name}``: one dot-free segment) with a handler."""
        TopicPattern(topic)  # a malformed pattern fails here, not at startup
        if broadcast and group is not None:
            raise UsageError(
                f"subscriber({topic!r}) got both broadcast=True and group={group!r}: a broadcast "
                "subscriber receives every message and has no group; drop one of them"
            )
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")

        def decorator(handler: Handler) -> Handler:
            name = f"{handler.__module__}.{handler.__qualname__}"
            effective = None if broadcast else group or self.group or name
            dependant = _compat.build_dependant(handler, path=topic)
            session = StreamMessage.get_session(dependant, self._provider)  # fails early
            sub = Subscriber(
                topic, effective, broadcast, max_retries, handler, (), dependant, session
            )
            self._subscribers.append(sub)
            return handler

        return decorator

    def publisher(self, topic: str) -> Callable[[Handler], Handler]:
        """Publish the handler's return value (unless None) to ``topic``; stacks either way."""
        if not isinstance(topic, str) or not topic or "{" in topic:
            raise ValueError(f"publisher() needs a topic name without {{param}}, got {topic!r}")

        def decorator(handler: Handler) -> Handler:
            self._publishers.append(Publisher(topic, handler))
            return handler

        return decorator

    def before_startup(self, func: Hook) -> Hook:
        """Run ``func`` (sync or async) before the broker starts."""
        self.hooks.before_startup.append(func)
        return func

    def after_startup(self, func: Hook) -> Hook:
        """Run ``func`` once broker, consumers and sub-apps run, before startup completes."""
        self.hooks.after_startup.append(func)
        return func

    def before_shutdown(self, func: Hook) -> Hook:
        """Run ``func`` first at shutdown, while everything still runs."""
        self.hooks.before_shutdown.append(func)
        return func

    def after_shutdown(self, func: Hook) -> Hook:
        """Run ``func`` last at shutdown, after the broker closed."""
        self.hooks.after_shutdown.append(func)
        return func

    # -- actions ------------------------------------------------------------------------

    async def publish(
        self, topic: str, body: Any, *, headers: Mapping[str, str] | None = None
    ) -> str:
        """Publish ``body`` (bytes as is, str as UTF-8, else JSON) to ``topic``; return its id."""
        return await self.broker.publish(
            topic, encode_body(body), headers=None if headers is None else dict(headers)
        )

    def mount(
        self,
        path: str,
        app: ASGIApp,
        name: str | None = None,
        *,
        startup_timeout: float | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        """Mount ``app`` at ``path`` and run its lifespan inside this router's."""
        route = LifespanMount(
            path,
            app,
            name=name,
            startup_timeout=startup_timeout,
            shutdown_timeout=shutdown_timeout,
        )
        self._mounts.append(route)
        self.routes.append(route)  # Starlette's Router.mount does the same with a plain Mount
        _compat.mark_routes_changed(self)

    async def _health(self) -> Response:
        try:
            alive = await self.broker.ping()
        except Exception as exc:  # a broker breaking its protocol: still an answer
            alive, reason = False, f"ping raised {exc!r}"
        else:
            reason = f"{type(self.broker).__name__}.ping() answered False: broker unreachable"
        if alive:
            return Response(status_code=204)
        return JSONResponse({"detail": reason}, status_code=503)

    def _notify(self, handled: Handled) -> None:
        for observer in list(self._observers):
            try:
                observer(handled)
            except Exception:  # an observer never stops a consumer
                logger.exception("observer %r failed on %s", observer, handled.message.id)

    def _provider(self) -> Any:
        """What `dependency_overrides` are read from: the running app, else the router's own."""
        return self._app if self._app is not None else self.dependency_overrides_provider
