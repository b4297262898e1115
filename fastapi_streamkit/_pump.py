"""The streaming engine behind every streaming response: one anyio task group per response.

    response task ── task group ─┬─ listener: receive() until http.disconnect → cancel the group
                                 │            (EventStream: also sends `: ping` while idle)
                                 └─ body (the response task itself), inside a shutdown scope:
                                      open source → [prime] → send head → pump → final message
                                      finally: close the source (shielded), unregister

Disconnect cancels the whole group; `request_shutdown()` cancels only the shutdown scope, so the
body still sends its final message. Items that are ready (the source returns without suspending)
are encoded into one buffer and sent as one ASGI message; a full buffer is followed by a
checkpoint, so a source that never awaits cannot starve the event loop.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import sniffio
from starlette.types import Message, Receive, Send

from ._shutdown import open_streams
from .exceptions import SlowClientError

__all__ = ["BodyPump", "StreamState", "close_source", "thread_limiter"]

_BATCH_BYTES = 64 * 1024
_BATCH_ITEMS = 1024
_DONE = object()  # the source is exhausted
_UNPRIMED = object()  # no item was fetched before the head
_THREADS = 256
_limiter: anyio.lowlevel.RunVar[anyio.CapacityLimiter] = anyio.lowlevel.RunVar("streamkit_limiter")


def thread_limiter() -> anyio.CapacityLimiter:
    """The package's own worker-thread limiter (one per event loop) for sync sources."""
    try:
        return _limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(_THREADS)
        _limiter.set(limiter)
        return limiter


class StreamState(enum.Enum):
    """Where one streaming response is in its life."""

    CONNECTING = "connecting"
    STREAMING = "streaming"
    DISCONNECTED = "disconnected"
    SHUTTING_DOWN = "shutting down"
    FINISHED = "finished"


class _Resume:
    """Await the rest of a coroutine that was stepped by hand until it suspended."""

    __slots__ = ("_step", "_yielded")

    def __init__(self, step: Any, yielded: Any) -> None:
        self._step = step
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        step, yielded = self._step, self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                step.close()
                raise
            except BaseException as exc:  # cancellation included: forward it to the source
                try:
                    yielded = step.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    yielded = step.send(sent)
                except StopIteration as done:
                    return done.value


class BodyPump:
    """Streams one response body: listener, pings, shutdown, send timeout, source closing."""

    __slots__ = (
        "state",
        "_encode",
        "_send",
        "_send_timeout",
        "_ping",
        "_ping_interval",
        "_sends",
        "_sending",
        "_ping_done",
        "_scope",
        "_group",
        "_call_soon",
        "_error",
        "_preamble",
    )

    def __init__(
        self,
        send: Send,
        encode: Callable[[Any], bytes],
        *,
        send_timeout: float | None = None,
        ping: bytes | None = None,
        ping_interval: float | None = None,
        preamble: bytes | None = None,
    ) -> None:
        self._preamble = preamble
        self.state = StreamState.CONNECTING
        self._encode = encode
        self._send = send
        self._send_timeout = send_timeout
        self._ping = ping
        self._ping_interval = ping_interval if ping else None
        self._sends = 0
        self._sending = False
        self._ping_done: anyio.Event | None = None
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
    ) -> bool:
        """Stream the body; True when it ended without an error (normally, disconnect, shutdown)."""
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
        return self.state is not StreamState.DISCONNECTED

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
                first = await self._next(source) if prime else _UNPRIMED
                if start is not None:
                    await self._send(start())
                head_sent = True
                self.state = StreamState.STREAMING
                if self._preamble:
                    await self._send_body(self._preamble)
                if first is not _DONE:
                    await self._pump(source, first)
            finally:
                with anyio.CancelScope(shield=True):
                    await close_source(source)
        if not head_sent and self.state is StreamState.SHUTTING_DOWN:
            if start is not None:
                await self._send(start())
            head_sent = True
        if head_sent and self.state is not StreamState.DISCONNECTED:
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
            if self.state is StreamState.STREAMING:
                self.state = StreamState.FINISHED

    async def _next(self, source: Any) -> Any:
        if isinstance(source, Iterator):
            return await anyio.to_thread.run_sync(next, source, _DONE, limiter=thread_limiter())
        try:
            return await source.__anext__()
        except StopAsyncIteration:
            return _DONE

    async def _pump(self, source: Any, first: Any) -> None:
        if first is not _UNPRIMED:
            await self._send_body(self._encode(first))
        if isinstance(source, Iterator):
            await self._pump_sync(source)
        elif sniffio.current_async_library() == "asyncio":
            await self._pump_batched(source)
        else:  # pragma: no cover - trio: no hand-stepping, one message per item
            async for item in source:
                await self._send_body(self._encode(item))
                await anyio.lowlevel.checkpoint()

    async def _pump_sync(self, source: Iterator[Any]) -> None:
        encode, limiter, run = self._encode, thread_limiter(), anyio.to_thread.run_sync
        while (item := await run(next, source, _DONE, limiter=limiter)) is not _DONE:
            await self._send_body(encode(item))

    async def _pump_batched(self, source: AsyncIterator[Any]) -> None:
        encode, anext = self._encode, source.__anext__
        chunks: list[bytes] = []
        size = 0
        while True:
            step: Any = anext()
            if not hasattr(step, "send"):
                step = step.__await__()
            try:
                suspended = step.send(None)
            except StopIteration as done:
                item = done.value
            except StopAsyncIteration:
                break
            else:
                if chunks:
                    await self._send_body(b"".join(chunks))
                    chunks, size = [], 0
                try:
                    item = await _Resume(step, suspended)
                except StopAsyncIteration:
                    break
            data = encode(item)
            chunks.append(data)
            size += len(data)
            if size >= _BATCH_BYTES or len(chunks) >= _BATCH_ITEMS:
                await self._send_body(b"".join(chunks))
                chunks, size = [], 0
                await anyio.lowlevel.checkpoint()
        if chunks:
            await self._send_body(b"".join(chunks))

    async def _send_body(self, data: bytes) -> None:
        await self._send_message({"type": "http.response.body", "body": data, "more_body": True})

    async def _send_message(self, message: Message) -> None:
        if self._ping_done is not None:
            await self._ping_done.wait()
        self._sending = True
        try:
            if self._send_timeout is None:
                await self._send(message)
            else:
                await self._send_bounded(message, self._send_timeout)
        except OSError:  # ASGI 2.4 servers report a gone client by failing the send
            await self._disconnected()
        finally:
            self._sending = False
        self._sends += 1

    async def _disconnected(self) -> None:
        if self.state is not StreamState.FINISHED:
            self.state = StreamState.DISCONNECTED
        assert self._group is not None
        self._group.cancel()
        await anyio.lowlevel.checkpoint()

    async def _send_bounded(self, message: Message, seconds: float) -> None:
        try:
            with anyio.fail_after(seconds):
                await self._send(message)
        except TimeoutError as exc:
            raise SlowClientError(
                f"the client did not accept {len(message.get('body', b''))} bytes within "
                f"send_timeout={seconds}s; the stream was aborted. Raise send_timeout for "
                "slow clients, or leave it None to wait forever"
            ) from exc

    async def _listen(self, receive: Receive) -> None:
        try:
            await self._listen_until_disconnect(receive)
        except Exception as exc:  # a failed ping: end the stream, raise it from run()
            self._error = exc
        if self._group is not None:
            self._group.cancel()

    async def _listen_until_disconnect(self, receive: Receive) -> None:
        interval, seen = self._ping_interval, 0
        while True:
            if interval is None:
                message = await receive()
            else:
                with anyio.move_on_after(interval) as waited:
                    message = await receive()
                if waited.cancelled_caught:
                    idle = seen == self._sends and not self._sending
                    if idle and self.state is StreamState.STREAMING:
                        await self._send_ping()
                    seen = self._sends
                    continue
            if message["type"] == "http.disconnect":
                if self.state is not StreamState.FINISHED:
                    self.state = StreamState.DISCONNECTED
                return

    async def _send_ping(self) -> None:
        assert self._ping is not None
        done = self._ping_done = anyio.Event()
        try:
            message = {"type": "http.response.body", "body": self._ping, "more_body": True}
            if self._send_timeout is None:
                await self._send(message)
            else:
                await self._send_bounded(message, self._send_timeout)
        finally:
            self._ping_done = None
            done.set()


async def close_source(source: Any) -> None:
    """Close a source so its ``finally`` runs: ``aclose()`` or ``close()`` in a worker thread."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    close = getattr(source, "close", None)
    if close is not None:
        await anyio.to_thread.run_sync(close, limiter=thread_limiter())
