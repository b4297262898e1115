"""Connections: `Request` and `WebSocket` that speak MessagePack, negotiate and refuse bad input.

`StreamRoute` (HTTP) and `ConnectionRouter` (HTTP and WebSocket, the base of `StreamRouter`)
make FastAPI hand endpoint parameters and dependencies annotated with these classes an
instance of them, also after ``include_router``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import params
from fastapi.exceptions import HTTPException
from fastapi.routing import APIRouter
from fastapi.types import DecoratedCallable
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import _compat
from ._accept import Accept, MediaRange, parse_media_type
from ._routing import StreamingAPIRoute
from ._session import SessionMixin
from ._websocket import Mode, WebSocket
from ._websocket_route import StreamWebSocketRoute, dispatch_included_websocket
from .codecs import msgpack_decode
from .exceptions import DecodeError

__all__ = [
    "Accept",
    "ConnectionRouter",
    "MediaRange",
    "Mode",
    "Request",
    "StreamRoute",
    "StreamWebSocketRoute",
    "WebSocket",
]


class Request(SessionMixin, StarletteRequest):
    """Starlette's `Request` plus Accept negotiation, ``content_type`` and ``msgpack()``."""

    @classmethod
    def of(cls, request: StarletteRequest) -> Request:
        """``request`` itself when it is one of ours, else ours over the same connection."""
        if isinstance(request, cls):
            return request
        return cls(request.scope, request.receive, request._send)

    @functools.cached_property
    def accept(self) -> Accept:
        """The parsed ``Accept`` header (everything is acceptable when it is absent).

        Repeated ``Accept`` field lines form one list (RFC 9110, section 5.3).
        """
        return Accept(", ".join(self.headers.getlist("accept")))

    @functools.cached_property
    def content_type(self) -> tuple[str, dict[str, str]]:
        """The ``Content-Type`` media type (lower case) and its parameters."""
        return parse_media_type(self.headers.get("content-type", ""))

    async def msgpack(self) -> Any:
        """The body decoded as one MessagePack object; HTTP 400 with the reason if it is not."""
        if not hasattr(self, "_msgpack"):
            body = await self.body()
            if not body:
                raise HTTPException(400, "expected a MessagePack body, got an empty body")
            try:
                self._msgpack = msgpack_decode(body)
            except DecodeError as exc:
                raise HTTPException(400, f"invalid MessagePack body: {exc}") from exc
        return self._msgpack


class StreamRoute(StreamingAPIRoute):
    """An `APIRoute` whose endpoint and dependencies receive our `Request` (GET also HEAD)."""

    def get_route_handler(self) -> Callable[[StarletteRequest], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: StarletteRequest) -> Response:
            return await handler(Request.of(request))

        return handle


class ConnectionRouter(APIRouter):
    """An `APIRouter` whose HTTP routes are `StreamRoute`s and WebSocket routes inject ours.

    ``websocket_origins`` (``["https://app.example"]``) refuses handshakes from other
    origins with 403; a handshake without an ``Origin`` header is allowed.
    """

    def __init__(self, *, websocket_origins: Sequence[str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", StreamRoute)
        super().__init__(**kwargs)
        self.websocket_origins = None if websocket_origins is None else list(websocket_origins)

    def add_api_websocket_route(
        self,
        path: str,
        endpoint: Callable[..., Any],
        name: str | None = None,
        *,
        dependencies: Sequence[params.Depends] | None = None,
        receive: Any | None = None,
        send: Any | None = None,
    ) -> None:
        """As FastAPI's, plus the models of received and sent frames (for AsyncAPI)."""
        route = StreamWebSocketRoute(
            self.prefix + path,
            endpoint,
            name=name,
            dependencies=[*self.dependencies, *(dependencies or [])],
            dependency_overrides_provider=self.dependency_overrides_provider,
            origins=self.websocket_origins,
            receive=receive,
            send=send,
        )
        self.routes.append(route)
        _compat.mark_routes_changed(self)

    def websocket(
        self,
        path: str,
        name: str | None = None,
        *,
        dependencies: Sequence[params.Depends] | None = None,
        receive: Any | None = None,
        send: Any | None = None,
    ) -> Callable[[DecoratedCallable], DecoratedCallable]:
        """Decorate a WebSocket endpoint; ``receive``/``send``: frame models for AsyncAPI."""

        def decorator(func: DecoratedCallable) -> DecoratedCallable:
            self.add_api_websocket_route(
                path, func, name=name, dependencies=dependencies, receive=receive, send=send
            )
            return func

        return decorator

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await dispatch_included_websocket(self, scope, receive, send):
            await super().handle(scope, receive, send)
