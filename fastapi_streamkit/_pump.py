"""The streaming engine behind every streaming response: one anyio task group per response.

    response task ── task group ─┬─ listener: receive() until http.disconnect → cancel the group;
                                 │    also sends, between two receives: the items the body left
                                 │    buffered when its source suspended, and `: ping` when idle
                                 └─ body (the response task itself), inside a shutdown scope:
                                      open source → [prime] → head → pump → final message;
                                      finally: close the source (shielded)

A disconnect cancels the whole group; `request_shutdown()` cancels only the shutdown scope, so
the body still sends its final message. Items the source returns without suspending are encoded
into one buffer and sent as one ASGI message; when the source suspends, a loop callback wakes the
listener, which sends the buffer, so nothing ready waits for the next item. A full buffer is
followed by a checkpoint: a source that never awaits cannot starve the event loop.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
from starlette.types import Message, Receive, Send

from ._shutdown import open_streams
from ._sources import DONE, close_source, thread_limiter
from .codecs import encode_error, json_encoder_into
from .exceptions import SlowClientError

__all__ = ["BodyPump", "StreamState"]

_BATCH_BYTES = 64 * 1024
_UNPRIMED = object()  # no item was fetched before the head
_json_into = json_encoder_into()


class StreamState(enum.Enum):
    """Where one streaming response is in its life."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    DISCONNECTED = "disconnected"
    SHUTTING_DOWN = "shutting down"
    FINISHED = "finished"


class BodyPump:
    """Streams one response body: listener, pings, shutdown, send timeout, source closing.

    ``frame=(prefix, suffix)`` lets plain dict items take the fast path: JSON written straight
    into the batch buffer between prefix and suffix; everything else goes through ``encode``.
    """

    __slots__ = (
        "state",
        "_buffer",
        "_busy",
        "_call_soon",
        "_encode",
        "_error",
        "_frame",
        "_group",
        "_ping",
        "_ping_interval",
        "_preamble",
        "_scope",
        "_send",
        "_send_timeout",
        "_sending",
        "_sends",
        "_suspended",
        "_wait",
    )

    def __init__(
        self,
        send: Send,
        encode: Callable[[Any], bytes],
        *,
        frame: tuple[bytes, bytes] | None = None,
        send_timeout: float | None = None,
        ping: bytes | None = None,
        ping_interval: float | None = None,
        preamble: bytes | None = None,
    ) -> None:
        self.state = StreamState.CONNECTING
        self._send, self._encode, self._send_timeout = send, encode, send_timeout
        self._frame = frame if _json_into is not None else None
        self._ping, self._preamble = ping, preamble
        self._ping_interval = ping_interval if ping else None
        self._buffer = bytearray()
        self._busy: anyio.Event | None = None  # set while the listener sends
        self._sending = False  # the body task is inside send()
        self._sends = 0
        self._suspended = False
        self._wait: anyio.CancelScope | None = None  # the listener's current receive()
        self._scope = anyio.CancelScope()
        self._group: anyio.CancelScope | None = None
        self._call_soon: Callable[[Callable[[], None]], Any] | None = None
        self._error: Exception | None = None

    async def run(
        self,
        receive: Receive,
        open_source: Callable[[], Any],
        start: Callable[[], Message] | None,
        *,
        prime: bool = False,
    ) -> None:
        """Stream the body (after the head from ``start``, if given) until it ends."""
        self._register()
        try:
            async with anyio.create_task_group() as group:
                self._group = group.cancel_scope
                group.start_soon(self._listen, receive)
                try:
                    await self._body(open_source, start, prime)
                except Exception as exc:  # raised again below, outside the task group
                    self._error = exc
                group.cancel_scope.cancel()
        finally:
            open_streams.discard(id(self))
        if self._error is not None:
            raise self._error

    def _register(self) -> None:
        try:
            self._call_soon = asyncio.get_running_loop().call_soon_threadsafe
        except RuntimeError:  # pragma: no cover - not asyncio: request_shutdown() cannot reach it
            return
        open_streams.add(id(self), self.stop_threadsafe)

    def stop_threadsafe(self) -> None:
        """End the stream cleanly (shutdown): safe from any thread or a signal handler."""
        if self._call_soon is not None:
            self._call_soon(self._stop)

    def _stop(self) -> None:
        if self.state in (StreamState.CONNECTING, StreamState.STREAMING):
            self.state = StreamState.SHUTTING_DOWN
            self._scope.cancel()

    async def _body(
        self, open_source: Callable[[], Any], start: Callable[[], Message] | None, prime: bool
    ) -> None:
        head_sent = False
        with self._scope:
            await anyio.lowlevel.checkpoint()  # lets the listener see a pending disconnect
            if self.state is not StreamState.CONNECTING:
                return
            source = open_source()
            try:
                first = await _next(source) if prime else _UNPRIMED
                if start is not None:
                    await self._send_message(start())
                head_sent = True
                self.state = StreamState.STREAMING
                if self._preamble:
                    await self._send_body(self._preamble)
                if first is not DONE:
                    await self._pump(source, first)
            finally:
                with anyio.CancelScope(shield=True):
                    await close_source(source)
        if not head_sent and self.state is StreamState.SHUTTING_DOWN and start is not None:
            await self._send_message(start())
            head_sent = True
        if head_sent and self.state is not StreamState.DISCONNECTED:
            await self._send_message(
                {"type": "http.response.body", "body": b"", "more_body": False}
            )
            if self.state is StreamState.STREAMING:
                self.state = StreamState.FINISHED

    async def _pump(self, source: Any, first: Any) -> None:
        if first is not _UNPRIMED:
            await self._send_body(self._encode(first))
        if isinstance(source, Iterator):
            encode, limiter, run = self._encode, thread_limiter(), anyio.to_thread.run_sync
            while (item := await run(next, source, DONE, limiter=limiter)) is not DONE:
                await self._send_body(encode(item))
        else:
            await self._pump_batched(source)

    async def _pump_batched(self, source: AsyncIterator[Any]) -> None:
        encode, into, buffer, limit = self._encode, _json_into, self._buffer, _BATCH_BYTES
        prefix, suffix = self._frame or (b"", b"")
        fast_type = dict if self._frame is not None else None
        call_soon = asyncio.get_running_loop().call_soon
        call_soon(self._on_suspend)
        try:
            async for item in source:
                if self._suspended:  # the task yielded since the watch was armed: re-arm it
                    self._suspended = False
                    call_soon(self._on_suspend)
                if type(item) is fast_type:
                    start = len(buffer)
                    buffer += prefix
                    try:
                        into(item, buffer, -1)  # type: ignore[misc]
                    except Exception as exc:
                        del buffer[start:]
                        raise encode_error(item, exc) from exc
                    buffer += suffix
                else:
                    buffer += encode(item)
                if len(buffer) >= limit:
                    await self._flush()
                    await anyio.lowlevel.checkpoint()
        except Exception:
            await self._flush()  # the items ready before a failing one still reach the client
            raise
        await self._flush()

    def _on_suspend(self) -> None:
        """A loop callback: the body task yielded. Wake the listener to send what is ready."""
        self._suspended = True
        if self._buffer and self._wait is not None:
            self._wait.cancel()

    async def _flush(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            await self._send_body(data)

    async def _send_body(self, data: bytes) -> None:
        await self._send_message({"type": "http.response.body", "body": data, "more_body": True})

    async def _send_message(self, message: Message) -> None:
        while self._busy is not None:
            await self._busy.wait()
        self._sending = True
        try:
            await self._send_bounded(message)
        finally:
            self._sending = False
        self._sends += 1

    async def _send_bounded(self, message: Message) -> None:
        # TimeoutError is an OSError: the deadline is checked on the scope, not by exception.
        try:
            if self._send_timeout is None:
                await self._send(message)
                return
            with anyio.move_on_after(self._send_timeout) as bounded:
                await self._send(message)
        except OSError:  # ASGI 2.4 servers may report a gone client by failing the send
            if self.state is not StreamState.FINISHED:
                self.state = StreamState.DISCONNECTED
            assert self._group is not None
            self._group.cancel()
            await anyio.lowlevel.checkpoint()
            return
        if bounded.cancelled_caught:
            raise SlowClientError(
                f"the client did not accept {len(message.get('body', b''))} bytes within "
                f"send_timeout={self._send_timeout}s, so the stream was aborted; raise "
                "send_timeout for slow clients, or leave it None to wait forever"
            )

    async def _listen(self, receive: Receive) -> None:
        try:
            await self._listen_until_disconnect(receive)
        except Exception as exc:  # a failed background send: raise it from run()
            self._error = exc
        assert self._group is not None
        self._group.cancel()

    async def _listen_until_disconnect(self, receive: Receive) -> None:
        interval, seen = self._ping_interval, 0
        while True:
            message = None
            with anyio.CancelScope() as wait:
                if interval is not None:
                    wait.deadline = anyio.current_time() + interval
                self._wait = wait
                if not self._buffer or self._sending:  # else a wake-up came before the scope
                    message = await receive()
            self._wait = None
            if message is not None:
                if message["type"] == "http.disconnect":
                    if self.state is not StreamState.FINISHED:
                        self.state = StreamState.DISCONNECTED
                    return
            elif self._buffer and not self._sending:
                data = bytes(self._buffer)
                self._buffer.clear()
                await self._send_aside(data)
            elif interval is not None and anyio.current_time() >= wait.deadline:
                idle = seen == self._sends and not self._sending
                if idle and self._ping is not None and self.state is StreamState.STREAMING:
                    await self._send_aside(self._ping)
                seen = self._sends

    async def _send_aside(self, data: bytes) -> None:
        """Send from the listener; the body task waits for it before its own next send."""
        busy = self._busy = anyio.Event()
        try:
            await self._send_bounded(
                {"type": "http.response.body", "body": data, "more_body": True}
            )
            self._sends += 1
        finally:
            self._busy = None
            busy.set()


async def _next(source: Any) -> Any:
    if isinstance(source, Iterator):
        return await anyio.to_thread.run_sync(next, source, DONE, limiter=thread_limiter())
    try:
        return await source.__anext__()
    except StopAsyncIteration:
        return DONE
