"""The route class behind `StreamRoute`: HEAD on GET routes, and typed generator endpoints.

A generator endpoint whose ``response_class`` is one of our streams (`EventStream`,
`JSONLines`, `MsgPackStream`, `Stream`) is wrapped in a coroutine endpoint that returns the
stream, with the generator function as its lazy content: HEAD never creates the generator.
Items are validated and serialized through the ``-> AsyncIterator[Item]`` annotation, and the
head waits for the first item, so headers and cookies set on an injected `Response` (in a
dependency, or in the generator before its first yield) are sent with it.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

from fastapi.datastructures import DefaultPlaceholder
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from . import _compat
from .responses import Stream
from .sse import EventStream, ServerSentEvent

__all__ = ["StreamingAPIRoute", "stream_item_type"]

_STREAM_ORIGINS = {
    collections.abc.AsyncIterator,
    collections.abc.AsyncIterable,
    collections.abc.AsyncGenerator,
    collections.abc.Iterator,
    collections.abc.Iterable,
    collections.abc.Generator,
}
_UNTYPED = (bytes, str, memoryview, object)
_RESPONSE_PARAM = "streamkit_response_"


def stream_item_type(endpoint: Callable[..., Any]) -> Any | None:
    """The ``Item`` of an endpoint annotated ``-> AsyncIterator[Item]`` (or alike), else None."""
    annotation = typing.get_type_hints(endpoint, include_extras=True).get("return")
    if typing.get_origin(annotation) not in _STREAM_ORIGINS:
        return None
    item = typing.get_args(annotation)[0] if typing.get_args(annotation) else None
    if item is None or item is Any or (isinstance(item, type) and item in _UNTYPED):
        return None
    if isinstance(item, type) and issubclass(item, ServerSentEvent):
        return None
    return item


def _stream_class(response_class: Any) -> type[Stream] | None:
    if isinstance(response_class, DefaultPlaceholder):
        response_class = response_class.value
    if isinstance(response_class, type) and issubclass(response_class, Stream):
        return response_class
    return None


class StreamingAPIRoute(APIRoute):
    """An `APIRoute` whose GET routes also answer HEAD and whose stream endpoints are typed.

    HEAD is answered without being listed in ``methods``, so OpenAPI shows no HEAD operation.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        stream_class = _stream_class(kwargs.get("response_class"))
        is_generator = inspect.isasyncgenfunction(endpoint) or inspect.isgeneratorfunction(endpoint)
        item = None
        if stream_class is not None and is_generator:
            item = stream_item_type(endpoint)
            endpoint = _stream_endpoint(endpoint, stream_class, item, kwargs.get("status_code"))
            if item is not None:
                _document_items(kwargs, stream_class, item)
        super().__init__(path, endpoint, **kwargs)
        if item is not None:  # OpenAPI components for the item model, also once included
            self.stream_item_type = item
            self.stream_item_field = _compat.stream_item_field(self, item)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is Match.PARTIAL and self._is_head_of_get(scope):
            return Match.FULL, child_scope
        return match, child_scope

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        app, methods = _compat.effective_route_app(self, scope)
        if scope["type"] == "http" and scope["method"] == "HEAD" and methods and "GET" in methods:
            await app(scope, receive, send)
            return
        await super().handle(scope, receive, send)

    def _is_head_of_get(self, scope: Scope) -> bool:
        if scope.get("method") != "HEAD":
            return False
        _, methods = _compat.effective_route_app(self, scope)
        return bool(methods) and "GET" in methods  # type: ignore[operator]


def _stream_endpoint(
    endpoint: Callable[..., Any], stream_class: type[Stream], item: Any, status: int | None
) -> Callable[..., Any]:
    """A coroutine endpoint with ``endpoint``'s parameters that returns the stream."""
    signature = inspect.signature(endpoint)
    hints = typing.get_type_hints(endpoint, include_extras=True)
    params = [
        p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()
    ]
    given = next((p.name for p in params if _is_response(p.annotation)), None)
    if given is None:
        params.append(
            inspect.Parameter(_RESPONSE_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Response)
        )
    adapter = TypeAdapter(item) if item is not None else None

    async def stream_endpoint(**values: Any) -> Stream:
        response: Response = values[given] if given else values.pop(_RESPONSE_PARAM)
        stream = stream_class(functools.partial(endpoint, **values), status_code=status or 200)
        stream.item_type = adapter
        stream.prime = True
        stream.on_head = functools.partial(_merge_head, response)
        return stream

    stream_endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=_ordered(params), return_annotation=inspect.Signature.empty
    )
    stream_endpoint.__name__ = endpoint.__name__
    stream_endpoint.__qualname__ = endpoint.__qualname__
    stream_endpoint.__doc__ = endpoint.__doc__
    stream_endpoint.__module__ = endpoint.__module__
    return stream_endpoint


def _is_response(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Response)


def _ordered(params: list[inspect.Parameter]) -> list[inspect.Parameter]:
    return sorted(params, key=lambda p: int(p.kind))


def _merge_head(response: Response, raw_headers: list[tuple[bytes, bytes]]) -> int | None:
    """Add what the endpoint set on its injected `Response` to the stream's head."""
    raw_headers.extend(h for h in response.raw_headers if h[0] != b"content-length")
    return response.status_code


def _document_items(kwargs: dict[str, Any], stream_class: type[Stream], item: Any) -> None:
    """Document the item schema in OpenAPI, as FastAPI does for its own SSE and JSON Lines."""
    status = str(kwargs.get("status_code") or 200)
    name = getattr(item, "__name__", None)
    media_type = stream_class.media_type or "application/octet-stream"
    ref: Mapping[str, Any] = (
        {"$ref": f"#/components/schemas/{name}"} if name else TypeAdapter(item).json_schema()
    )
    if issubclass(stream_class, EventStream):
        item_schema: dict[str, Any] = {
            "type": "object",
            "required": ["data"],
            "properties": {
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": ref,
                },
                "event": {"type": "string"},
                "id": {"type": "string"},
                "retry": {"type": "integer", "minimum": 0},
            },
        }
    else:
        item_schema = dict(ref)
    extra = {"responses": {status: {"content": {media_type: {"itemSchema": item_schema}}}}}
    kwargs["openapi_extra"] = _deep_merge(dict(kwargs.get("openapi_extra") or {}), extra)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = _deep_merge(dict(base[key]), value)
        else:
            base[key] = value
    return base
