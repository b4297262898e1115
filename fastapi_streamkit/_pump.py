"""The streaming engine behind every streaming response.

    response task ─┬─ listener task: receive() until http.disconnect → cancel the body scope
                   ├─ side sends (short-lived, started by loop callbacks only when
                   │    needed): the batch the body left when its source suspended,
                   │    `: ping` when idle, the head of a primed stream that waits
                   └─ body, in the response task inside one cancel scope:
                        open source → [prime] → head → pump; finally: close the source (shielded)
    after the scope: the final body message unless the client disconnected; then the listener
    and any side send are cancelled and awaited, so no task outlives the response.

A disconnect cancels the body scope. `request_shutdown()` cancels it too but marks the stream as
shutting down, so the final message is still sent. Items the source returns without suspending
are encoded into one buffer and sent as one ASGI message; when the source suspends, a loop
callback starts a side send of the buffer, so nothing ready waits for the next item. A full
buffer is followed by a checkpoint: a source that never awaits cannot starve the event loop.
The listener and side sends are plain asyncio tasks rather than an anyio task group: an idle
stream then costs a few KiB (see benchmarks/memory.py); their lifetimes are still bounded by
`run`, which cancels and awaits them.
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
from .codecs import encode_error, json_encode, json_lines_encoder
from .exceptions import SlowClientError

__all__ = ["BodyPump", "StreamState"]

_BATCH_BYTES = 64 * 1024
_UNPRIMED = object()  # no item was fetched before the head
_json_lines = json_lines_encoder()
_BATCH_ITEMS = 512
_PENDING_CHECKS = 3
_FINAL: Message = {"type": "http.response.body", "body": b"", "more_body": False}


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
        "_listener",
        "_scope",
        "_head_sent",
        "_ping",
        "_pending",
        "_ping_interval",
        "_preamble",
        "_seen",
        "_send",
        "_send_timeout",
        "_sending",
        "_sends",
        "_side",
        "_start",
        "_suspended",
        "_timer",
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
        self._frame = frame if _json_lines is not None else None
        self._ping, self._preamble = ping, preamble
        self._ping_interval = ping_interval if ping else None
        self._buffer = bytearray()
        self._pending: list[Any] = []  # ready dict items, JSON-encoded together into the buffer
        self._busy: asyncio.Event | None = None  # set while a side send runs
        self._sending = False  # the body task is inside send()
        self._sends = self._seen = 0
        self._suspended = self._head_sent = False
        self._start: Callable[[], Message] | None = None
        self._scope = anyio.CancelScope()
        self._listener: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._side: asyncio.Task[None] | None = None
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
        self._start, self._head_sent = start, start is None
        self._register()
        self._listener = asyncio.get_running_loop().create_task(self._listen(receive))
        try:
            with self._scope:
                self._arm_timer()
                try:
                    await self._body(open_source, prime)
                except Exception as exc:  # raised again below, after the helpers ended
                    self._error = exc
        finally:
            if self._timer is not None:
                self._timer.cancel()
            open_streams.discard(id(self))
            await self._end_tasks()
        if self._error is not None:
            raise self._error
        await self._finish()

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

    async def _body(self, open_source: Callable[[], Any], prime: bool) -> None:
        # A few loop turns let the listener take a disconnect the server already delivered
        # (uvicorn's receive returns it at once; channel-based receives checkpoint first).
        for _ in range(_PENDING_CHECKS):
            await anyio.lowlevel.checkpoint()
            if self.state is not StreamState.CONNECTING:
                return
        source = open_source()
        try:
            first = await _next(source) if prime else _UNPRIMED
            await self._send_head()
            self.state = StreamState.STREAMING
            if self._preamble:
                await self._send_body(self._preamble)
            if first is not DONE:
                if first is not _UNPRIMED:
                    await self._send_body(self._encode(first))
                if isinstance(source, Iterator):
                    await self._pump_threaded(source)
                else:
                    await self._pump_batched(source)
            self.state = StreamState.FINISHED
        finally:
            with anyio.CancelScope(shield=True):
                await close_source(source)

    async def _finish(self) -> None:
        """After the group: the final message, unless the client is gone."""
        if self.state is StreamState.DISCONNECTED:
            return
        if self.state is StreamState.SHUTTING_DOWN:
            await self._send_head()
        if self._head_sent:
            await self._send_message(_FINAL)

    async def _send_head(self) -> None:
        while self._busy is not None:
            await self._busy.wait()
        if not self._head_sent:
            self._head_sent = True
            assert self._start is not None
            await self._send_message(self._start())

    async def _pump_threaded(self, source: Iterator[Any]) -> None:
        encode, limiter, run = self._encode, thread_limiter(), anyio.to_thread.run_sync
        while (item := await run(next, source, DONE, limiter=limiter)) is not DONE:
            await self._send_body(encode(item))

    async def _pump_batched(self, source: AsyncIterator[Any]) -> None:
        encode, buffer, pending, limit = self._encode, self._buffer, self._pending, _BATCH_BYTES
        fast_type = dict if self._frame is not None else None
        call_soon = asyncio.get_running_loop().call_soon
        call_soon(self._on_suspend)
        try:
            async for item in source:
                if self._suspended:  # the task yielded since the watch was armed: re-arm it
                    self._suspended = False
                    call_soon(self._on_suspend)
                if type(item) is fast_type:
                    pending.append(item)
                    if len(pending) < _BATCH_ITEMS:
                        continue
                else:
                    if pending:
                        self._encode_pending()
                    buffer += encode(item)
                    if len(buffer) < limit:
                        continue
                await self._flush()
                await anyio.lowlevel.checkpoint()
        except Exception:
            await self._flush()  # the items ready before a failing one still reach the client
            raise
        await self._flush()

    def _encode_pending(self) -> None:
        """Encode the ready dict items into the buffer, framed; on a bad item keep the good."""
        pending, buffer = self._pending, self._buffer
        prefix, suffix = self._frame or (b"", b"")
        try:
            lines = _json_lines(pending)  # type: ignore[misc]
        except Exception:  # find the bad item: the ones before it are still sent
            items = pending[:]
            pending.clear()
            for item in items:
                try:
                    buffer += prefix + json_encode(item) + suffix
                except Exception as exc:
                    raise encode_error(item, exc) from exc
            return
        pending.clear()
        if prefix or suffix != b"\n":
            lines = prefix + lines[:-1].replace(b"\n", suffix + prefix) + suffix
        buffer += lines

    def _take(self) -> tuple[bytes, Exception | None]:
        """Everything ready, encoded (up to a bad item: then its error too); empties the buffer."""
        error = None
        if self._pending:
            try:
                self._encode_pending()
            except Exception as exc:
                error = exc
        data = bytes(self._buffer)
        self._buffer.clear()
        return data, error

    def _on_suspend(self) -> None:
        """A loop callback: the body task yielded. Send what is ready, beside it."""
        self._suspended = True
        if (self._buffer or self._pending) and not self._sending and self._busy is None:
            self._send_aside(None)

    def _arm_timer(self) -> None:
        if self._ping_interval is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._ping_interval, self._on_timer)

    def _on_timer(self) -> None:
        """A loop callback every ``ping_interval``: ping if idle; send a primed stream's head."""
        self._arm_timer()
        if self._busy is not None or self._sending:
            return
        if not self._head_sent and self.state is StreamState.CONNECTING:
            self._head_sent = True  # a primed source is slow: the head goes now, pings follow
            assert self._start is not None
            self._send_aside(self._start())
        elif self._seen == self._sends and self._head_sent and self._ping is not None:
            if self.state in (StreamState.CONNECTING, StreamState.STREAMING):
                self._send_aside(
                    {"type": "http.response.body", "body": self._ping, "more_body": True}
                )
        self._seen = self._sends

    def _send_aside(self, message: Message | None) -> None:
        """Start a side send (from a loop callback, so a plain asyncio task, ended by `run`).

        The body task waits for it before its own next send.
        """
        if self.state not in (StreamState.CONNECTING, StreamState.STREAMING):
            return
        self._busy = asyncio.Event()
        self._side = asyncio.get_running_loop().create_task(self._side_send(message, self._busy))

    async def _end_tasks(self) -> None:
        tasks = {t for t in (self._listener, self._side) if t is not None and not t.done()}
        self._listener = self._side = None
        for task in tasks:
            task.cancel()
        if tasks:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(tasks)

    async def _side_send(self, message: Message | None, busy: asyncio.Event) -> None:
        """Send ``message``, or (None) the ready items; an encoding error ends the stream."""
        try:
            error = None
            if message is None:
                data, error = self._take()
                message = _body_message(data)
            await self._send_bounded(message)
            self._sends += 1
            if error is not None:
                raise error
        except Exception as exc:  # e.g. a ping to a stuck client: raise it from run()
            self._error = exc
            self._scope.cancel()
        finally:
            self._busy = None
            busy.set()

    async def _flush(self) -> None:
        while self._busy is not None:  # a side send of an earlier batch goes first
            await self._busy.wait()
        data, error = self._take()
        if data:
            await self._send_body(data)
        if error is not None:
            raise error

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
            self._disconnected()
            await anyio.lowlevel.checkpoint()
            return
        if bounded.cancelled_caught:
            raise SlowClientError(
                f"the client did not accept {len(message.get('body', b''))} bytes within "
                f"send_timeout={self._send_timeout}s, so the stream was aborted; raise "
                "send_timeout for slow clients, or leave it None to wait forever"
            )

    def _disconnected(self) -> None:
        if self.state is not StreamState.FINISHED:
            self.state = StreamState.DISCONNECTED
        self._scope.cancel()

    async def _listen(self, receive: Receive) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        except Exception as exc:  # a failing receive ends the stream too
            self._error = exc
            self._scope.cancel()
            return
        self._disconnected()


def _body_message(data: bytes) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": True}


async def _next(source: Any) -> Any:
    if isinstance(source, Iterator):
        return await anyio.to_thread.run_sync(next, source, DONE, limiter=thread_limiter())
    try:
        return await source.__anext__()
    except StopAsyncIteration:
        return DONE
