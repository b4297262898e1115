"""Streaming responses that never leak: `Stream`, `ASGIStreamingResponse`, `JSONLines`,
`MsgPackStream`.

Deliberate differences from Starlette's `StreamingResponse` (otherwise a drop-in):
- a disconnect is noticed on every ASGI spec version, even while the source is idle, and the
  source is closed at once (``aclose()`` / ``close()``), so its ``finally`` runs;
- HEAD sends the head only, and never starts the source;
- items that are ready are sent together, and a source that never awaits cannot block the loop;
- sync sources run in worker threads under the package's own limiter, not FastAPI's;
- `request_shutdown()` and SIGTERM/SIGINT end open streams cleanly.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any, TypeAlias

import anyio
from pydantic import TypeAdapter
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from ._pump import BodyPump
from ._sources import close_source, is_iterable, opener
from .codecs import json_encode, msgpack_encoder
from .exceptions import EncodeError

__all__ = [
    "ASGIStreamingResponse",
    "Cookies",
    "JSONLines",
    "MsgPackStream",
    "Stream",
    "StreamContent",
]

Chunk: TypeAlias = str | bytes | memoryview
StreamContent: TypeAlias = (
    Iterable[Any] | AsyncIterable[Any] | Callable[[], Iterable[Any] | AsyncIterable[Any]]
)
"""A sync or async iterable of items, or a zero-argument callable returning one."""
Cookies: TypeAlias = Mapping[str, str] | Iterable[Mapping[str, Any]]
"""Cookies: ``{name: value}``, or Starlette-style dicts (``{"key":.., "value":..}``)."""


def _cookie_headers(cookies: Cookies | None) -> list[tuple[bytes, bytes]]:
    if not cookies:
        return []
    scratch = Response()
    scratch.raw_headers = []
    if isinstance(cookies, Mapping):
        for key, value in cookies.items():
            scratch.set_cookie(key, value)
    else:
        for cookie in cookies:
            scratch.set_cookie(**cookie)
    return scratch.raw_headers


@functools.lru_cache(maxsize=16)
def _encode_chunk(encoding: str) -> Callable[[Any], bytes]:
    """The chunk encoder for ``encoding``, built once and shared by every response."""

    def encode(chunk: Any) -> bytes:
        if isinstance(chunk, bytes):
            return chunk
        if isinstance(chunk, str):
            return chunk.encode(encoding)
        if isinstance(chunk, (memoryview, bytearray)):
            return bytes(chunk)
        raise EncodeError(
            f"Stream expected str, bytes or memoryview chunks, got {type(chunk).__name__}; "
            "use JSONLines, MsgPackStream or EventStream to stream objects"
        )

    return encode


class ASGIStreamingResponse:
    """A low-level ASGI streaming response; ``await send_body(send, receive)`` emits the body."""

    __slots__ = (
        "background",
        "encode_item",
        "encoding",
        "frame",
        "is_head_response",
        "iterator",
        "on_head",
        "ping",
        "ping_interval",
        "preamble",
        "prime",
        "raw_headers",
        "send_timeout",
        "status_code",
    )

    def __init__(
        self,
        *,
        iterator: StreamContent,
        background: BackgroundTask | None = None,
        content_length: int | None = None,
        cookies: Cookies | None = None,
        encoding: str = "utf-8",
        headers: Mapping[str, str] | None = None,
        is_head_response: bool = False,
        media_type: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.iterator = iterator
        self.background = background
        self.encoding = encoding
        self.is_head_response = is_head_response
        self.status_code = 200 if status_code is None else status_code
        raw = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()
        ]
        names = {name for name, _ in raw}
        if media_type is not None and b"content-type" not in names:
            if media_type.startswith("text/") and "charset=" not in media_type.lower():
                media_type += f"; charset={encoding}"
            raw.append((b"content-type", media_type.encode("latin-1")))
        if content_length is not None and b"content-length" not in names:
            raw.append((b"content-length", str(content_length).encode("latin-1")))
        raw.extend(_cookie_headers(cookies))
        self.raw_headers = raw
        self.encode_item: Callable[[Any], bytes] = _encode_chunk(encoding)
        self.frame: tuple[bytes, bytes] | None = None
        self.send_timeout: float | None = None
        self.ping: bytes | None = None
        self.ping_interval: float | None = None
        self.preamble: bytes | None = None
        self.prime = False
        self.on_head: Callable[[list[tuple[bytes, bytes]]], int | None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            send = _websocket_denial(send)
        if self.is_head_response or scope.get("method") == "HEAD":
            await self._send_head_only(send)
        else:
            await self._pump(send).run(
                receive, opener(self.iterator), self._start, prime=self.prime
            )
        if self.background is not None:
            await self.background()

    async def send_body(self, send: Send, receive: Receive) -> None:
        """Emit the body events (the head was sent already), stopping on a disconnect."""
        await self._pump(send).run(receive, opener(self.iterator), None)

    def _pump(self, send: Send) -> BodyPump:
        return BodyPump(
            send,
            self.encode_item,
            frame=self.frame,
            send_timeout=self.send_timeout,
            ping=self.ping,
            ping_interval=self.ping_interval,
            preamble=self.preamble,
        )

    def _start(self) -> Message:
        if self.on_head is not None:
            status = self.on_head(self.raw_headers)
            if status is not None:
                self.status_code = status
        return {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }

    async def _send_head_only(self, send: Send) -> None:
        if is_iterable(self.iterator):  # a factory is never called for HEAD
            with anyio.CancelScope(shield=True):
                await close_source(self.iterator)
        await send(self._start())
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _websocket_denial(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        await send({**message, "type": "websocket." + message["type"]})

    return wrapped


class Stream(Response):
    """A streaming `Response`: return it from an endpoint or use it as ``response_class``."""

    media_type: str | None = None

    def __init__(
        self,
        content: StreamContent,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        cookies: Cookies | None = None,
        encoding: str = "utf-8",
        send_timeout: float | None = None,
    ) -> None:
        self.content = content
        self.status_code = status_code
        if media_type is not None:
            self.media_type = media_type
        self.background = background
        self.encoding = self.charset = encoding
        self.send_timeout = send_timeout
        self.item_type: TypeAdapter[Any] | None = None
        self.prime = False
        self.on_head: Callable[[list[tuple[bytes, bytes]]], int | None] | None = None
        self.init_headers(headers)
        self.raw_headers.extend(_cookie_headers(cookies))

    def item_encoder(self) -> Callable[[Any], bytes]:
        """The function that turns one item of ``content`` into body bytes."""
        return _encode_chunk(self.encoding)

    def item_frame(self) -> tuple[bytes, bytes] | None:
        """``(prefix, suffix)`` around the JSON of a plain dict item, for the fast path."""
        return None

    def to_asgi_response(
        self,
        request: Request | None,
        *,
        background: BackgroundTask | None = None,
        cookies: Cookies | None = None,
        headers: Mapping[str, str] | None = None,
        is_head_response: bool = False,
        media_type: str | None = None,
        status_code: int | None = None,
    ) -> ASGIStreamingResponse:
        """Build the ASGI response; this response's own headers and status take precedence."""
        response = ASGIStreamingResponse(
            iterator=self.content,
            background=self.background or background,
            encoding=self.encoding,
            is_head_response=is_head_response,
            status_code=self.status_code or status_code,
        )
        own = list(self.raw_headers)
        names = {name for name, _ in own}
        if b"content-type" not in names and media_type is not None:
            own.append((b"content-type", media_type.encode("latin-1")))
        for name, value in (headers or {}).items():
            key = name.lower().encode("latin-1")
            if key not in names:
                own.append((key, value.encode("latin-1")))
        own.extend(_cookie_headers(cookies))
        response.raw_headers = own
        self._configure(response)
        return response

    def _configure(self, response: ASGIStreamingResponse) -> None:
        response.encode_item = self.item_encoder()
        response.frame = self.item_frame()
        response.send_timeout = self.send_timeout
        response.prime = self.prime
        response.on_head = self.on_head

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = ASGIStreamingResponse(
            iterator=self.content,
            background=self.background,
            encoding=self.encoding,
            status_code=self.status_code,
        )
        response.raw_headers = self.raw_headers
        self._configure(response)
        await response(scope, receive, send)


class JSONLines(Stream):
    """Stream items as JSON Lines (``application/jsonl``): one JSON document per line."""

    media_type = "application/jsonl"

    def __init__(
        self,
        content: StreamContent,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        cookies: Cookies | None = None,
        encoding: str = "utf-8",
        send_timeout: float | None = None,
    ) -> None:
        super().__init__(
            content,
            status_code=status_code,
            headers=headers,
            media_type=media_type,
            background=background,
            cookies=cookies,
            encoding=encoding,
            send_timeout=send_timeout,
        )

    def item_encoder(self) -> Callable[[Any], bytes]:
        adapter = self.item_type
        if adapter is None:
            return lambda item: json_encode(item) + b"\n"
        return lambda item: adapter.dump_json(adapter.validate_python(item), by_alias=True) + b"\n"

    def item_frame(self) -> tuple[bytes, bytes] | None:
        return (b"", b"\n") if self.item_type is None else None


class MsgPackStream(Stream):
    """Stream items as concatenated MessagePack objects (``application/vnd.msgpack``)."""

    media_type = "application/vnd.msgpack"

    def __init__(
        self,
        content: StreamContent,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        cookies: Cookies | None = None,
        encoding: str = "utf-8",
        send_timeout: float | None = None,
    ) -> None:
        super().__init__(
            content,
            status_code=status_code,
            headers=headers,
            media_type=media_type,
            background=background,
            cookies=cookies,
            encoding=encoding,
            send_timeout=send_timeout,
        )

    def item_encoder(self) -> Callable[[Any], bytes]:
        encode = msgpack_encoder()
        adapter = self.item_type
        if adapter is None:
            return encode
        return lambda item: encode(
            adapter.dump_python(adapter.validate_python(item), mode="json", by_alias=True)
        )
