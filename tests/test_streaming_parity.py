"""Parity with Starlette's `StreamingResponse`: its own tests (encode/starlette
tests/test_responses.py, tests/test_websockets.py), run against `Stream` side by side with
`StreamingResponse`, so that wherever `StreamingResponse` works, `Stream` works.

Deliberate divergences (each has its own test below):
- HEAD sends headers only and never starts the source; Starlette streams the body and lets the
  server drop it.
- Under ASGI spec 2.4 Starlette calls ``receive`` only for the request body and notices a
  disconnect only when a send fails, raising `ClientDisconnect` to the caller; `Stream` listens
  on ``receive`` on every spec version (so it notices an idle client leaving), treats a failing
  send as a disconnect, ends without raising, and closes the source itself.
- On a disconnect `Stream` closes the source (``aclose()`` / ``close()``); when the source was
  paused at a ``yield`` (a send in progress) Starlette leaves it open until garbage collection.
- Ready items may be sent together as one ASGI message (the bytes on the wire are the same).
- `Stream`'s options after ``content`` are keyword-only.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Message
from starlette.websockets import WebSocket

from fastapi_streamkit import Stream
from tests.apps.wire import ASGICall

Factory = Callable[..., Any]
CLASSES = [StreamingResponse, Stream]


@pytest.fixture(params=CLASSES, ids=lambda cls: cls.__name__)
def response_class(request: pytest.FixtureRequest) -> Factory:
    return request.param  # type: ignore[no-any-return]


def _client(app: Any) -> TestClient:
    return TestClient(app)


async def numbers(minimum: int, maximum: int) -> AsyncIterator[str]:
    for i in range(minimum, maximum + 1):
        yield str(i)
        if i != maximum:
            yield ", "
        await anyio.lowlevel.checkpoint()


def test_streaming_response(response_class: Factory) -> None:
    filled_by_bg_task = ""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def numbers_for_cleanup(start: int = 1, stop: int = 5) -> None:
            nonlocal filled_by_bg_task
            async for thing in numbers(start, stop):
                filled_by_bg_task = filled_by_bg_task + thing

        cleanup_task = BackgroundTask(numbers_for_cleanup, start=6, stop=9)
        generator = numbers(1, 5)
        response = response_class(generator, media_type="text/plain", background=cleanup_task)
        await response(scope, receive, send)

    assert filled_by_bg_task == ""
    response = _client(app).get("/")
    assert response.text == "1, 2, 3, 4, 5"
    assert filled_by_bg_task == "6, 7, 8, 9"


def test_streaming_response_custom_iterator(response_class: Factory) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        class CustomAsyncIterator:
            def __init__(self) -> None:
                self._called = 0

            def __aiter__(self) -> CustomAsyncIterator:
                return self

            async def __anext__(self) -> str:
                if self._called == 5:
                    raise StopAsyncIteration()
                self._called += 1
                return str(self._called)

        response = response_class(CustomAsyncIterator(), media_type="text/plain")
        await response(scope, receive, send)

    assert _client(app).get("/").text == "12345"


def test_streaming_response_custom_iterable(response_class: Factory) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        class CustomAsyncIterable:
            async def __aiter__(self) -> AsyncIterator[str]:
                for i in range(5):
                    yield str(i + 1)

        response = response_class(CustomAsyncIterable(), media_type="text/plain")
        await response(scope, receive, send)

    assert _client(app).get("/").text == "12345"


def test_sync_streaming_response(response_class: Factory) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        def numbers(minimum: int, maximum: int) -> Iterator[str]:
            for i in range(minimum, maximum + 1):
                yield str(i)
                if i != maximum:
                    yield ", "

        generator = numbers(1, 5)
        response = response_class(generator, media_type="text/plain")
        await response(scope, receive, send)

    assert _client(app).get("/").text == "1, 2, 3, 4, 5"


def test_response_headers(response_class: Factory) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = {"x-header-1": "123", "x-header-2": "456"}
        response = response_class(iter(["hello, world"]), media_type="text/plain", headers=headers)
        response.headers["x-header-2"] = "789"
        await response(scope, receive, send)

    response = _client(app).get("/")
    assert response.headers["x-header-1"] == "123"
    assert response.headers["x-header-2"] == "789"


def test_populate_headers(response_class: Factory) -> None:
    app = response_class(content=iter(["hi"]), headers={}, media_type="text/html")
    response = _client(app).get("/")
    assert response.text == "hi"
    assert "content-length" not in response.headers
    assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_response_do_not_add_redundant_charset(response_class: Factory) -> None:
    app = response_class(iter(["x"]), media_type="text/plain; charset=utf-8")
    response = _client(app).get("/")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


def test_streaming_response_unknown_size(response_class: Factory) -> None:
    app = response_class(content=iter(["hello", "world"]))
    response = _client(app).get("/")
    assert "content-length" not in response.headers


def test_streaming_response_known_size(response_class: Factory) -> None:
    app = response_class(content=iter(["hello", "world"]), headers={"content-length": "10"})
    response = _client(app).get("/")
    assert response.headers["content-length"] == "10"
    assert response.text == "helloworld"


def test_streaming_response_memoryview(response_class: Factory) -> None:
    app = response_class(content=iter([memoryview(b"\xc0"), memoryview(b"\xf5")]))
    response = _client(app).get("/")
    assert response.content == b"\xc0\xf5"


def test_status_code(response_class: Factory) -> None:
    app = response_class(content=iter(["gone"]), status_code=410)
    response = _client(app).get("/")
    assert (response.status_code, response.text) == (410, "gone")


def test_as_a_route_endpoint_result(response_class: Factory) -> None:
    async def endpoint(request: Any) -> Any:
        return response_class(numbers(1, 3), media_type="text/plain")

    app = Starlette(routes=[Route("/", endpoint)])
    assert _client(app).get("/").text == "1, 2, 3"


@pytest.mark.anyio
async def test_streaming_response_stops_if_receiving_http_disconnect(
    response_class: Factory,
) -> None:
    streamed = 0
    disconnected = anyio.Event()

    async def receive_disconnect() -> Message:
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal streamed
        if message["type"] == "http.response.body":
            streamed += len(message.get("body", b""))
            # Simulate disconnection after download has started
            if streamed >= 16:
                disconnected.set()

    async def stream_indefinitely() -> AsyncIterator[bytes]:
        while True:
            # Need a sleep for the event loop to switch to another task
            await anyio.lowlevel.checkpoint()
            yield b"chunk "

    response = response_class(content=stream_indefinitely())
    with anyio.move_on_after(1) as cancel_scope:
        await response(ASGICall().scope, receive_disconnect, send)
    assert not cancel_scope.cancel_called, "Content streaming should stop itself."


def test_websocket_denial_response(response_class: Factory) -> None:
    async def endpoint(websocket: WebSocket) -> None:
        response = response_class(iter(["foo", "bar"]), status_code=404)
        await websocket.send_denial_response(response)

    app = Starlette(routes=[WebSocketRoute("/ws", endpoint)])
    with pytest.raises(WebSocketDenialResponse) as info, _client(app).websocket_connect("/ws"):
        pass  # pragma: no cover
    assert info.value.status_code == 404
    assert info.value.content == b"foobar"


# -- deliberate divergences ------------------------------------------------------------------


def test_head_never_starts_the_source() -> None:
    started: list[type] = []

    def source(cls: type) -> Iterator[str]:
        started.append(cls)
        yield "body"

    for cls in CLASSES:
        response = _client(cls(source(cls), media_type="text/plain")).head("/")
        assert response.status_code == 200 and response.content == b""
    assert started == [StreamingResponse]  # Starlette ran it for nothing; Stream did not


@pytest.mark.anyio
async def test_spec_2_4_client_disconnect() -> None:
    """Starlette's test: under 2.4 a failing send raises ClientDisconnect to the caller and
    leaves the generator open. `Stream` ends quietly and closes the generator itself."""
    chunks = bytearray()
    streamed = False
    closed = False

    async def receive_never() -> Message:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Message) -> None:
        nonlocal streamed
        if message["type"] == "http.response.body":
            if not streamed:
                chunks.extend(message.get("body", b""))
                streamed = True
            else:
                raise OSError

    async def stream_indefinitely() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            while True:
                await anyio.lowlevel.checkpoint()
                yield b"chunk"
        finally:
            closed = True

    stream = stream_indefinitely()
    response = Stream(content=stream)
    with anyio.move_on_after(1) as cancel_scope:
        await response(ASGICall(spec_version="2.4").scope, receive_never, send)
    assert not cancel_scope.cancel_called
    assert chunks and chunks == b"chunk" * (len(chunks) // 5)  # ready chunks may be batched
    assert closed  # no `await stream.aclose()` needed, unlike with StreamingResponse


@pytest.mark.anyio
async def test_disconnect_closes_a_source_paused_at_a_yield() -> None:
    """The client leaves while the response waits on a send (the source is paused at its
    ``yield``); the app still holds the generator. Starlette leaves it open; Stream closes it."""
    closed: dict[str, bool] = {}
    held: list[AsyncGenerator[bytes, None]] = []

    for cls in CLASSES:

        async def source(name: str = cls.__name__) -> AsyncGenerator[bytes, None]:
            closed[name] = False
            try:
                while True:
                    yield b"chunk"
            finally:
                closed[name] = True

        call = ASGICall()

        async def blocked_send(message: Message, call: ASGICall = call) -> None:
            if message["type"] == "http.response.body":
                call.disconnected.set()
                await anyio.sleep_forever()

        held.append(source())
        with anyio.fail_after(5):
            await cls(held[-1])(call.scope, call.receive, blocked_send)
    assert closed == {"StreamingResponse": False, "Stream": True}
    await held[0].aclose()
