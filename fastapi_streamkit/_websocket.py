"""`WebSocket`: Starlette's WebSocket plus MessagePack, modes, size limits and clean refusals.

Deliberate divergences from Starlette (everything else is Starlette's behaviour, unchanged):

- a message larger than `WebSocket.max_message_size` closes the connection with 1009, a frame
  that does not decode (JSON, MessagePack, UTF-8) with 1007, a text frame read as binary (or
  the reverse) with 1003; each with a reason. The receive method then raises
  `WebSocketDisconnect(code, reason)` (Starlette: `KeyError` / `JSONDecodeError`), and so
  does every later ``receive_*`` call, while ``iter_*`` simply stop;
- `receive` itself enforces the size limit: it answers an oversized message with a
  ``websocket.disconnect`` message carrying 1009, after closing the connection;
- JSON goes through `fastapi_streamkit.codecs`: ``send_json`` also encodes datetime, UUID,
  Decimal, dataclasses and pydantic models; ``receive_json`` rejects ``NaN``/``Infinity``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, overload

from starlette.types import Message
from starlette.websockets import WebSocket as StarletteWebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected, WebSocketState

from ._session import SessionMixin
from .codecs import (
    Serializer,
    json_decode,
    json_encode,
    json_encoder,
    msgpack_decode,
    msgpack_encode,
    msgpack_encoder,
)
from .exceptions import DecodeError, UsageError

__all__ = ["Mode", "WebSocket"]

Mode = Literal["text", "binary"]
"""Which key of a ``websocket.receive`` / ``websocket.send`` message carries the data."""

_CONNECTED = WebSocketState.CONNECTED
_MAX_REASON = 123  # bytes: RFC 6455 leaves 123 bytes for the close reason


def _reason(text: str) -> str:
    return text.encode()[:_MAX_REASON].decode("utf-8", "ignore")


def _check_mode(mode: str) -> Mode:
    if mode == "text":
        return "text"
    if mode == "binary":
        return "binary"
    raise UsageError(f'The "mode" argument should be "text" or "binary", got {mode!r}.')


def _oversize(data: str | bytes, limit: int) -> int | None:
    """The size in bytes of ``data`` when it exceeds ``limit``, else None."""
    size = len(data)
    if isinstance(data, str):
        if size * 4 <= limit:  # UTF-8 takes at most 4 bytes a character
            return None
        if size <= limit:
            size = len(data.encode("utf-8", "surrogatepass"))
    return size if size > limit else None


class WebSocket(SessionMixin, StarletteWebSocket):
    """Starlette's `WebSocket` plus MessagePack, ``*_data`` modes and a message size limit."""

    max_message_size: int | None = 1_048_576
    """Largest message accepted, in bytes (UTF-8 for text); None for no limit."""

    _refusal: tuple[int, str] | None = None
    _encoders: dict[tuple[str, Serializer], Callable[[Any], bytes]] | None = None

    async def receive(self) -> Message:
        """Receive an ASGI message; an oversized one closes with 1009 (see the module doc)."""
        if self.client_state is not _CONNECTED:
            return await super().receive()  # the handshake, or Starlette's error once closed
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.receive":
            limit = self.max_message_size
            if limit is not None:
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                if len(data) * 4 > limit and (size := _oversize(data, limit)) is not None:
                    reason = f"expected a message of at most {limit} bytes, got {size}"
                    await self._refuse(1009, reason)
                    return {"type": "websocket.disconnect", "code": 1009, "reason": self._reason()}
            return message
        if kind == "websocket.disconnect":
            self.client_state = WebSocketState.DISCONNECTED
            return message
        raise RuntimeError(
            f'Expected ASGI message "websocket.receive" or "websocket.disconnect", but got {kind!r}'
        )

    async def send(self, message: Message) -> None:
        """Send an ASGI message, checking state transitions exactly as Starlette does."""
        if self.application_state is _CONNECTED and message["type"] == "websocket.send":
            try:  # the hot path, without Starlette's full transition table
                await self._send(message)
            except OSError as exc:
                self.application_state = WebSocketState.DISCONNECTED
                raise WebSocketDisconnect(code=1006) from exc
            return
        await super().send(message)

    def _reason(self) -> str:
        return "" if self._refusal is None else self._refusal[1]

    async def _refuse(self, code: int, reason: str) -> WebSocketDisconnect:
        """Close with ``code``; remember it so that every later ``receive_*`` raises it."""
        self._refusal = (code, _reason(reason))
        if self.application_state == _CONNECTED:
            with contextlib.suppress(WebSocketDisconnect):  # the peer may already be gone
                await self.close(code, self._refusal[1])
        return WebSocketDisconnect(*self._refusal)

    @overload
    async def _receive_payload(self, mode: Literal["text"]) -> str: ...
    @overload
    async def _receive_payload(self, mode: Literal["binary"]) -> bytes: ...
    @overload
    async def _receive_payload(self, mode: Mode) -> str | bytes: ...
    async def _receive_payload(self, mode: Mode) -> str | bytes:
        if self._refusal is not None:
            raise WebSocketDisconnect(*self._refusal)
        if self.application_state != _CONNECTED:
            raise WebSocketDisconnected('WebSocket is not connected. Need to call "accept" first.')
        message = await self.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message["code"], message.get("reason"))
        data = message.get(mode if mode == "text" else "bytes")
        if data is None:
            got = "binary" if mode == "text" else "text"
            raise await self._refuse(
                1003, f"expected a {mode} frame, got a {got} frame; receive it in {got} mode"
            )
        return data  # type: ignore[no-any-return]

    @overload
    async def receive_data(self, mode: Literal["text"]) -> str: ...
    @overload
    async def receive_data(self, mode: Literal["binary"]) -> bytes: ...
    async def receive_data(self, mode: Mode) -> str | bytes:
        """Receive one message's data: ``str`` in text mode, ``bytes`` in binary mode."""
        return await self._receive_payload(_check_mode(mode))

    async def receive_text(self) -> str:
        """Receive a text frame (a binary one closes with 1003)."""
        return await self._receive_payload("text")

    async def receive_bytes(self) -> bytes:
        """Receive a binary frame (a text one closes with 1003)."""
        return await self._receive_payload("binary")

    async def receive_json(self, mode: str = "text") -> Any:
        """Receive a JSON document from a text (or ``mode="binary"``) frame."""
        data = await self._receive_payload(_check_mode(mode))
        try:
            return json_decode(data)
        except DecodeError as exc:
            raise await self._refuse(1007, str(exc)) from exc

    async def receive_msgpack(self) -> Any:
        """Receive one MessagePack object from a binary frame."""
        data = await self._receive_payload("binary")
        try:
            return msgpack_decode(data)
        except DecodeError as exc:
            raise await self._refuse(1007, str(exc)) from exc

    @overload
    def iter_data(self, mode: Literal["text"] = "text") -> AsyncIterator[str]: ...
    @overload
    def iter_data(self, mode: Literal["binary"]) -> AsyncIterator[bytes]: ...
    async def iter_data(self, mode: Mode = "text") -> AsyncIterator[str | bytes]:
        """Yield each message's data until the connection closes."""
        mode = _check_mode(mode)
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                yield await self._receive_payload(mode)

    async def iter_json(self, mode: str = "text") -> AsyncIterator[Any]:
        """Yield each JSON document until the connection closes."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                yield await self.receive_json(mode)

    async def iter_msgpack(self) -> AsyncIterator[Any]:
        """Yield each MessagePack object until the connection closes."""
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                yield await self.receive_msgpack()

    async def send_data(
        self, data: str | bytes, mode: Mode = "text", encoding: str = "utf-8"
    ) -> None:
        """Send ``data`` as a text or binary frame, converting with ``encoding`` as needed."""
        if _check_mode(mode) == "text":
            text = data if isinstance(data, str) else data.decode(encoding)
            await self.send({"type": "websocket.send", "text": text})
        else:
            raw = data.encode(encoding) if isinstance(data, str) else data
            await self.send({"type": "websocket.send", "bytes": raw})

    def _encoder(self, kind: str, serializer: Serializer) -> Callable[[Any], bytes]:
        if self._encoders is None:
            self._encoders = {}
        key = (kind, serializer)
        encoder = self._encoders.get(key)
        if encoder is None:
            build = json_encoder if kind == "json" else msgpack_encoder
            encoder = self._encoders[key] = build(serializer)
        return encoder

    async def send_json(
        self, data: Any, mode: str = "text", *, serializer: Serializer | None = None
    ) -> None:
        """Send ``data`` as JSON; ``serializer`` turns unknown types into JSON-able values."""
        mode = _check_mode(mode)
        encode = json_encode if serializer is None else self._encoder("json", serializer)
        payload = encode(data)
        if mode == "text":
            await self.send({"type": "websocket.send", "text": payload.decode()})
        else:
            await self.send({"type": "websocket.send", "bytes": payload})

    async def send_msgpack(self, data: Any, *, serializer: Serializer | None = None) -> None:
        """Send ``data`` as one MessagePack object in a binary frame."""
        encode = msgpack_encode if serializer is None else self._encoder("msgpack", serializer)
        await self.send({"type": "websocket.send", "bytes": encode(data)})
