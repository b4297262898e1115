"""`StreamWebSocketRoute`: a FastAPI WebSocket route that hands endpoints our `WebSocket`.

FastAPI builds every WebSocket connection as a plain Starlette `WebSocket` (whatever the
parameter's annotation), and ``include_router`` rebuilds each `APIWebSocketRoute` as a plain
one. This route runs FastAPI's own pipeline (`_compat.websocket_session_app`) with our class;
its router serves the included case through `dispatch_included_websocket`, over the
dependencies FastAPI's rebuild computed (include-level ones first), so endpoint parameters
and every dependency get the same `WebSocket` object. The route also checks the handshake's
``Origin`` and treats a `WebSocketDisconnect` escaping the endpoint as the normal end of the
connection (not an unhandled error).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from fastapi import params
from fastapi.routing import APIRouter, APIWebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from . import _compat
from ._websocket import WebSocket

__all__ = ["StreamWebSocketRoute", "dispatch_included_websocket", "normalize_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` lower-cased, default port dropped; None when not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if not parts.scheme or not host or parts.path or parts.query or parts.fragment:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    if ":" in host:
        host = f"[{host}]"
    scheme = parts.scheme.lower()
    if port is None or port == _DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _origin_set(origins: Sequence[str]) -> frozenset[str]:
    if isinstance(origins, str):
        raise TypeError(f"origins must be a list of origins, not the string {origins!r}")
    normalized = set()
    for origin in origins:
        value = normalize_origin(origin)
        if value is None:
            raise ValueError(
                f"expected an origin as scheme://host[:port] (no path, not even '/'), "
                f"got {origin!r}; for example 'https://app.example'"
            )
        normalized.add(value)
    return frozenset(normalized)


async def _refuse_origin(scope: Scope, receive: Receive, send: Send, origin: str) -> None:
    """Close before accept: the server answers the handshake with HTTP 403.

    (A denial response could carry a body, but uvicorn's default WebSocket implementation
    then logs "ASGI callable returned without completing handshake" as an error.)
    """
    websocket = WebSocket(scope, receive=receive, send=send)
    await websocket.receive()  # websocket.connect
    await websocket.close(1008, "Origin not allowed")


class StreamWebSocketRoute(APIWebSocketRoute):
    """An `APIWebSocketRoute` injecting our `WebSocket`, with an optional Origin allow-list."""

    def __init__(
        self,
        path: str,
        endpoint: Callable[..., Any],
        *,
        name: str | None = None,
        dependencies: Sequence[params.Depends] | None = None,
        dependency_overrides_provider: Any | None = None,
        origins: Sequence[str] | None = None,
        receive: Any | None = None,
        send: Any | None = None,
    ) -> None:
        super().__init__(
            path,
            endpoint,
            name=name,
            dependencies=dependencies,
            dependency_overrides_provider=dependency_overrides_provider,
        )
        self.origins: frozenset[str] | None = None if origins is None else _origin_set(origins)
        self.receive_model = receive
        """Model of the frames the client sends (for AsyncAPI); None when undocumented."""
        self.send_model = send
        """Model of the frames the server sends (for AsyncAPI); None when undocumented."""
        self.app = self._session_app(self, dependency_overrides_provider)
        # routes compare by value and are unhashable: key by id, dropped when the rebuild dies
        self._included_apps: dict[int, ASGIApp] = {}

    def _session_app(
        self, route: APIWebSocketRoute, dependency_overrides_provider: Any | None
    ) -> ASGIApp:
        session = _compat.websocket_session_app(
            route.dependant,
            websocket_class=WebSocket,
            dependency_overrides_provider=dependency_overrides_provider,
            embed_body_fields=route._embed_body_fields,
        )
        origins = self.origins

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            if origins is not None:
                origin = _origin_header(scope)
                if origin is not None and normalize_origin(origin) not in origins:
                    await _refuse_origin(scope, receive, send, origin)
                    return
            try:
                await session(scope, receive, send)
            except WebSocketDisconnect:
                pass  # the connection ended (the client left, or we closed it): not an error

        return app

    def included_app(self, target: _compat.IncludedWebSocket) -> ASGIApp:
        """The app serving this route as ``include_router`` rebuilt it (cached per rebuild)."""
        key = id(target.effective)
        app = self._included_apps.get(key)
        if app is None:
            app = self._session_app(target.effective, target.dependency_overrides_provider)
            self._included_apps[key] = app
            weakref.finalize(target.effective, self._included_apps.pop, key, None)
        return app


def _origin_header(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"origin":
            return bytes(value).decode("latin-1")
    return None


async def dispatch_included_websocket(
    router: APIRouter, scope: Scope, receive: Receive, send: Send
) -> bool:
    """Serve a `StreamWebSocketRoute` of ``router`` reached through ``include_router``.

    Call it first in the router's ``handle``; False means "not ours, handle as usual".
    """
    if scope["type"] != "websocket":
        return False
    target = _compat.included_websocket(router, scope)
    if target is None or not isinstance(target.route, StreamWebSocketRoute):
        return False
    _compat.select_included_websocket(scope, target)
    await target.route.included_app(target)(scope, receive, send)
    return True
