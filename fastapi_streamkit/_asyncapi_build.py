"""Reads one app into an AsyncAPI `Document`: its routers' subscribers and publishers,
then its streaming and WebSocket routes, in routing order (see `asyncapi.py` for the rules).
"""

from __future__ import annotations

import inspect
import sys
import types
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from fastapi import params
from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import RouteContext
from starlette.applications import Starlette

from . import _compat
from ._asyncapi_model import Document, Message, Object, Schemas, Shape, unique
from .brokers.memory import MemoryBroker
from .responses import JSONLines, MsgPackStream
from .sse import EventStream

if TYPE_CHECKING:
    from ._subscriber import Subscriber
    from .router import Publisher, StreamRouter

__all__ = ["Builder"]

Mode = Literal["validation", "serialization"]
Action = Literal["send", "receive"]


class Builder:
    """Fills a `Document` from one app: routers first, then routes in routing order."""

    def __init__(self, app: Starlette, base_url: str) -> None:
        info: dict[str, Any] = {
            "title": str(getattr(app, "title", None) or type(app).__name__),
            "version": str(getattr(app, "version", None) or "0.1.0"),
        }
        if getattr(app, "description", None):
            info["description"] = str(app.description)  # type: ignore[attr-defined]
        self.document = Document(info)
        self.schemas: Schemas = self.document.schemas
        self._base_url = urlsplit(base_url)
        self._brokers: list[tuple[Any, str]] = []

    # -- brokers: subscribers and publishers ----------------------------------------------

    def add_router(self, router: StreamRouter) -> None:
        if not router.subscribers and not router.publishers:
            return  # its broker carries nothing of this app's: no server entry
        server = self._broker_server(router.broker)
        for sub in router.subscribers:
            self._add_subscriber(server, sub)
        for publisher in router.publishers:
            self._add_publisher(server, publisher)

    def _add_subscriber(self, server: str, sub: Subscriber) -> None:
        where = f"subscriber {sub.name}"
        channel = self._topic_channel(server, sub.topic)
        payload, name = _body(self.schemas, sub.dependant, where)
        headers = _params(self.schemas, sub.dependant, params.Header, where)
        message = Message(name or f"{sub.handler.__name__}_message", payload=payload)
        message.headers = headers
        operation = self.document.operation(sub.handler.__name__, "receive", channel, message)
        operation.doc = inspect.getdoc(sub.handler)
        operation.extensions = {
            "x-streamkit-handler": sub.name,
            "x-streamkit-broadcast": sub.broadcast,
            "x-streamkit-max-retries": sub.max_retries,
            "x-streamkit-dead-letter-topic": f"{sub.topic}.dlq",
        }
        if sub.group is not None:
            operation.extensions["x-streamkit-group"] = sub.group

    def _add_publisher(self, server: str, publisher: Publisher) -> None:
        handler = publisher.handler
        channel = self._topic_channel(server, publisher.topic)
        annotation = _return_type(handler)
        message = Message(f"{handler.__name__}_result")
        if annotation is not None:
            message = Message(
                _type_name(annotation) or message.name,
                content_type=_content_type(annotation),
                payload=self.schemas.add(
                    annotation, "serialization", f"result of {handler.__qualname__}"
                ),
            )
        operation = self.document.operation(f"{handler.__name__}_publish", "send", channel, message)
        operation.doc = f"Publishes the result of {handler.__qualname__} (unless None)."
        operation.extensions = {
            "x-streamkit-handler": f"{handler.__module__}.{handler.__qualname__}"
        }

    def _topic_channel(self, server: str, topic: str) -> str:
        return self.document.channel(
            server, topic, f"Topic `{topic}` on the {server} broker.", "One dot-free topic segment."
        )

    def _broker_server(self, broker: Any) -> str:
        for known, server_id in self._brokers:
            if known is broker:
                return server_id
        server = _broker_entry(broker)
        server_id = unique(str(server["protocol"]), self.document.servers)
        self.document.servers[server_id] = server
        self._brokers.append((broker, server_id))
        return server_id

    # -- routes: streams and WebSockets ---------------------------------------------------

    def add_stream_route(self, context: RouteContext) -> None:
        kind = _stream_kind(context)
        if kind is None or not getattr(context, "include_in_schema", True):
            return
        label, content_type = kind
        path = str(context.path_format)
        methods = sorted(context.methods or {"GET"})
        method = "GET" if "GET" in methods else methods[0]
        channel = self.document.channel(
            self._http_server("http"),
            path,
            f"{label} over HTTP: `{method} {path}`; each item is one message.",
            "One path segment.",
        )
        item = getattr(context.original_route, "stream_item_type", None)
        message = Message(f"{context.name}_item", content_type=content_type)
        if item is not None:
            where = f"items of {method} {path}"
            message.name = _type_name(item) or message.name
            message.payload = self.schemas.add(item, "serialization", where)
        operation = self.document.operation(str(context.name), "send", channel, message)
        operation.doc = inspect.getdoc(context.endpoint) if context.endpoint else None
        binding: dict[str, Any] = {"method": method, "bindingVersion": "0.3.0"}
        dependant = getattr(context, "dependant", None)
        query = _params(self.schemas, dependant, params.Query, path) if dependant else None
        if query is not None:
            binding["query"] = query
        operation.bindings = {"http": binding}

    def add_websocket(self, context: RouteContext) -> None:
        route, path = context.original_route, str(context.path_format)
        channel = self.document.channel(
            self._http_server("ws"),
            path,
            f"WebSocket `{path}`: the client receives what the app sends, and the reverse.",
            "One path segment.",
        )
        name = str(context.name or path)
        directions: tuple[tuple[Action, str, Mode], ...] = (
            ("receive", "receive_model", "validation"),
            ("send", "send_model", "serialization"),
        )
        for action, attr, mode in directions:
            model = getattr(route, attr, None)
            message = Message(f"{name}_{action}")
            if model is not None:
                message.name = _type_name(model) or message.name
                message.payload = self.schemas.add(model, mode, f"{attr} of WebSocket {path}")
            operation = self.document.operation(f"{name}_{action}", action, channel, message)
            if action == "receive" and context.endpoint is not None:
                operation.doc = inspect.getdoc(context.endpoint)
        self.document.channels[channel].bindings = {"ws": self._ws_binding(context, path)}

    def _ws_binding(self, context: RouteContext, path: str) -> dict[str, Any]:
        binding: dict[str, Any] = {"method": "GET", "bindingVersion": "0.1.0"}
        dependant = getattr(context, "dependant", None)
        if dependant is not None:
            for key, kind in (("query", params.Query), ("headers", params.Header)):
                shape = _params(self.schemas, dependant, kind, f"WebSocket {path}")
                if shape is not None:
                    binding[key] = shape
        return binding

    def _http_server(self, kind: Literal["http", "ws"]) -> str:
        if kind not in self.document.servers:
            url = self._base_url
            scheme = url.scheme or "http"
            if kind == "ws":
                scheme = "wss" if scheme == "https" else "ws"
            server: dict[str, Any] = {"host": url.netloc or "localhost", "protocol": scheme}
            server["title"] = "WebSocket routes" if kind == "ws" else "HTTP streaming routes"
            if url.path.strip("/"):
                server["pathname"] = url.path.rstrip("/")
            self.document.servers[kind] = server
        return kind


# -- reading declarations ---------------------------------------------------------------------


def _body(schemas: Schemas, dependant: Any, where: str) -> tuple[Shape | None, str | None]:
    """The body's shape (FastAPI's embed rules) and, for a single body, its type's name."""
    fields = _compat.flat_body_params(dependant)
    if not fields:
        return None, None
    if len(fields) == 1 and not _compat.embed_body_fields(dependant):
        annotation = fields[0].field_info.annotation
        shape = schemas.add(_field_type(fields[0]), "validation", f"body of {where}")
        return shape, _type_name(annotation)
    return _object(schemas, fields, f"body of {where}"), None


def _params(schemas: Schemas, dependant: Any, kind: type[Any], where: str) -> Object | None:
    """An object schema of the ``kind`` (Header, Query) parameters, None when there are none."""
    fields = [f for f in _compat.flat_params(dependant) if isinstance(f.field_info, kind)]
    return _object(schemas, fields, f"{kind.__name__.lower()}s of {where}") if fields else None


def _object(schemas: Schemas, fields: list[Any], where: str) -> Object:
    properties = tuple((f.alias, schemas.add(_field_type(f), "validation", where)) for f in fields)
    required = tuple(f.alias for f in fields if f.field_info.is_required())
    return Object(properties, required)


def _field_type(model_field: Any) -> Any:
    """A parameter's type with its `FieldInfo` (description, default, constraints)."""
    return typing.Annotated[model_field.field_info.annotation, model_field.field_info]


def _return_type(handler: Callable[..., Any]) -> Any | None:
    """The declared result of ``handler``, Optional stripped; None when undeclared or Any."""
    try:
        annotation = typing.get_type_hints(handler, include_extras=True).get("return")
    except Exception:  # unresolvable forward references: undocumented, not an error
        return None
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = typing.Union[tuple(args)] if len(args) > 1 else args[0]  # noqa: UP007
    if annotation in (None, type(None), Any):
        return None
    return annotation


def _type_name(annotation: Any) -> str | None:
    return annotation.__name__ if isinstance(annotation, type) else None


def _content_type(annotation: Any) -> str:
    """How `StreamRouter.publish` encodes a value of this type."""
    if annotation is str:
        return "text/plain"
    if annotation in (bytes, bytearray, memoryview):
        return "application/octet-stream"
    return "application/json"


def _stream_kind(context: RouteContext) -> tuple[str, str] | None:
    """(label, item content type) of a streaming route, None for any other route."""
    response_class = getattr(context, "response_class", None)
    if isinstance(response_class, DefaultPlaceholder):
        response_class = response_class.value
    cls = response_class if isinstance(response_class, type) else type(None)
    if issubclass(cls, EventStream) or getattr(context, "is_sse_stream", False):
        return "Server-Sent Events (text/event-stream, each event's data)", "application/json"
    if issubclass(cls, JSONLines) or getattr(context, "is_json_stream", False):
        return "JSON Lines (application/jsonl, one document per line)", "application/json"
    if issubclass(cls, MsgPackStream):
        return "MessagePack stream (concatenated objects)", "application/vnd.msgpack"
    return None


def _broker_entry(broker: Any) -> dict[str, Any]:
    """The server entry of a broker: in-process, Redis (credentials left out), or unknown."""
    name = type(broker).__name__
    if isinstance(broker, MemoryBroker):
        return {
            "host": "in-process",
            "protocol": "memory",
            "title": name,
            "description": "Embedded broker: messages stay inside one process.",
        }
    redis = sys.modules.get("fastapi_streamkit.brokers.redis")  # loaded if one exists
    if redis is not None and isinstance(broker, redis.RedisBroker):
        url = urlsplit(broker.url)
        host = url.hostname or "localhost"
        server = {
            "host": f"{host}:{url.port}" if url.port else host,
            "protocol": "redis",
            "title": name,
            "description": f"Redis Streams, one stream per topic under `{broker.prefix}`.",
        }
        if url.path.strip("/"):
            server["pathname"] = url.path
        return server
    return {"host": "unknown", "protocol": name.lower(), "title": name}
