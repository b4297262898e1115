"""Server-Sent Events: `ServerSentEvent`, `EventStream` and the `LastEventID` parameter type.

An `EventStream` item can be a `ServerSentEvent` (ours, or FastAPI's, encoded by FastAPI's
rules), ``bytes`` (already encoded), ``str`` (the data, as is), an object with ``id`` and
``body`` attributes such as a broker message, or anything JSON-encodable.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import Depends, Header
from fastapi.sse import ServerSentEvent as FastAPIServerSentEvent
from pydantic import BaseModel, TypeAdapter
from starlette.background import BackgroundTask

from .codecs import json_encode
from .exceptions import EncodeError
from .responses import ASGIStreamingResponse, Stream, StreamContent

__all__ = ["EventStream", "LastEventID", "ServerSentEvent", "Streamable"]

PING = b": ping\n\n"


@runtime_checkable
class Streamable(Protocol):
    """What `EventStream` needs of a broker message: an ``id`` and a ``body``."""

    @property
    def id(self) -> str: ...

    @property
    def body(self) -> bytes | str: ...


def _lines(field: bytes, text: str) -> bytes:
    if "\n" not in text and "\r" not in text:
        return field + text.encode() + b"\n"
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return b"".join(field + line.encode() + b"\n" for line in lines)


def _single_line(value: str | None, name: str) -> str | None:
    if value is not None and ("\n" in value or "\r" in value):
        raise ValueError(f"SSE {name!r} must be a single line, got {value!r}")
    return value


class ServerSentEvent:
    """One SSE event. ``data``: a ``str`` is sent as is, anything else as JSON."""

    __slots__ = ("comment", "data", "event", "id", "retry")

    def __init__(
        self,
        data: Any = None,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        comment: str | None = None,
    ) -> None:
        self.data = data
        self.event = _single_line(event, "event")
        self.id = _single_line(id, "id")
        if id is not None and "\0" in id:
            raise ValueError(f"SSE 'id' must not contain NUL, got {id!r}")
        if retry is not None and (not isinstance(retry, int) or retry < 0):
            raise ValueError(
                f"SSE 'retry' must be a non-negative int (milliseconds), got {retry!r}"
            )
        self.retry = retry
        self.comment = comment

    def encode(self) -> bytes:
        """The event in the SSE wire format, ending with a blank line."""
        data = None if self.data is None else _data_text(self.data)
        return _event_bytes(data, self.event, self.id, self.retry, self.comment)

    def __repr__(self) -> str:
        fields = ("data", "event", "id", "retry", "comment")
        shown = ", ".join(
            f"{f}={getattr(self, f)!r}" for f in fields if getattr(self, f) is not None
        )
        return f"ServerSentEvent({shown})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.__slots__)

    __hash__ = None  # type: ignore[assignment]


def _data_text(data: Any) -> str:
    return data if isinstance(data, str) else json_encode(data).decode()


def _event_bytes(
    data: str | None, event: str | None, id: str | None, retry: int | None, comment: str | None
) -> bytes:
    out = b""
    if comment is not None:
        out += _lines(b": ", comment)
    if event is not None:
        out += b"event: " + event.encode() + b"\n"
    if data is not None:
        out += _lines(b"data: ", data)
    if id is not None:
        out += b"id: " + id.encode() + b"\n"
    if retry is not None:
        out += b"retry: " + str(retry).encode() + b"\n"
    return out + b"\n"


def _fastapi_event(item: FastAPIServerSentEvent) -> bytes:
    if item.raw_data is not None:
        data: str | None = item.raw_data
    elif item.data is not None:
        data = json_encode(item.data).decode()
    else:
        data = None
    return _event_bytes(data, item.event, item.id, item.retry, item.comment)


def _message_event(item: Any) -> bytes:
    """``id:`` + ``data:`` of a broker message; one message fanned out to many streams is
    encoded once (cached by value: a message's SSE form depends on its id and body only)."""
    try:
        return _cached_message_event(item)
    except TypeError:  # an unhashable message-like object
        return _encode_message_event(item)


def _encode_message_event(item: Any) -> bytes:
    body = item.body
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EncodeError(
                f"message {item.id!r} has a body that is not UTF-8 ({exc}); SSE data must be "
                "text: publish text or JSON, or encode binary bodies (e.g. base64) first"
            ) from exc
    return _event_bytes(body, None, str(item.id), None, None)


_cached_message_event = functools.lru_cache(maxsize=1024)(_encode_message_event)


def sse_encoder(adapter: TypeAdapter[Any] | None = None) -> Callable[[Any], bytes]:
    """Build the item -> SSE bytes function; with ``adapter`` plain items are validated first."""
    encode_json = json_encode if adapter is None else _typed_json(adapter)

    def encode(item: Any) -> bytes:
        kind = type(item)
        if kind is dict and adapter is None:
            return b"data: " + encode_json(item) + b"\n\n"
        if kind is ServerSentEvent:
            return item.encode()  # type: ignore[no-any-return]
        if kind is bytes:
            return item  # type: ignore[no-any-return]
        if kind is str:
            return _lines(b"data: ", item) + b"\n"
        return _encode_other(item, encode_json)

    return encode


_PLAIN = sse_encoder()


def _typed_json(adapter: TypeAdapter[Any]) -> Callable[[Any], bytes]:
    return lambda item: adapter.dump_json(adapter.validate_python(item), by_alias=True)


def _encode_other(item: Any, encode_json: Callable[[Any], bytes]) -> bytes:
    kind = _kind(type(item))  # type: ignore[arg-type]  # mypy: a class is not "Hashable"
    if kind is _Kind.MESSAGE:  # first: the fan-out case, one broker message to many streams
        return _message_event(item)
    if kind is _Kind.JSON:
        return b"data: " + encode_json(item) + b"\n\n"
    if kind is _Kind.EVENT:
        return item.encode()  # type: ignore[no-any-return]
    if kind is _Kind.FASTAPI_EVENT:
        return _fastapi_event(item)
    if kind is _Kind.BYTES:
        return bytes(item)
    if kind is _Kind.TEXT:
        return _lines(b"data: ", item) + b"\n"
    if hasattr(item, "id") and hasattr(item, "body"):  # MAYBE_MESSAGE
        return _message_event(item)
    return b"data: " + encode_json(item) + b"\n\n"


class _Kind(enum.Enum):
    EVENT = 1
    FASTAPI_EVENT = 2
    BYTES = 3
    TEXT = 4
    MESSAGE = 5
    MAYBE_MESSAGE = 6  # a class without ``id``/``body``: its instances may still have them
    JSON = 7


@functools.lru_cache(maxsize=256)
def _kind(cls: type) -> _Kind:
    """How items of class ``cls`` are encoded, decided once per class (Protocol checks are slow)."""
    if issubclass(cls, ServerSentEvent):
        return _Kind.EVENT
    if issubclass(cls, FastAPIServerSentEvent):
        return _Kind.FASTAPI_EVENT
    if issubclass(cls, (bytes, bytearray, memoryview)):
        return _Kind.BYTES
    if issubclass(cls, str):
        return _Kind.TEXT
    if not issubclass(cls, (BaseModel, Mapping)) and all(
        hasattr(cls, name)
        or name in getattr(cls, "__dataclass_fields__", {})
        or name in getattr(cls, "__slots__", ())
        for name in ("id", "body")
    ):
        return _Kind.MESSAGE
    return _Kind.JSON


class EventStream(Stream):
    """A Server-Sent Events response (``text/event-stream``) with ``: ping`` comments while idle."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: StreamContent,
        *,
        ping_interval: float | None = 15.0,
        retry: int | None = None,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
        send_timeout: float | None = None,
    ) -> None:
        sse_headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        super().__init__(
            content,
            status_code=status_code,
            headers={**sse_headers, **(headers or {})},
            background=background,
            send_timeout=send_timeout,
        )
        self.ping_interval = ping_interval
        self.retry = ServerSentEvent(retry=retry).encode() if retry is not None else None

    def item_encoder(self) -> Callable[[Any], bytes]:
        return _PLAIN if self.item_type is None else sse_encoder(self.item_type)

    def item_frame(self) -> tuple[bytes, bytes] | None:
        return (b"data: ", b"\n\n") if self.item_type is None else None

    def _configure(self, response: ASGIStreamingResponse) -> None:
        super()._configure(response)
        if self.ping_interval:
            response.ping, response.ping_interval = PING, self.ping_interval
        response.preamble = self.retry


def _last_event_id(
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> str | None:
    return last_event_id


LastEventID = Annotated[str | None, Depends(_last_event_id)]
"""Endpoint parameter type: the ``Last-Event-ID`` header, or None when absent."""
