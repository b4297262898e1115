"""Graceful shutdown of open streams: SIGTERM/SIGINT chained in the main thread, and
`request_shutdown()` for servers run in a thread or driven by hand.

The 2 s exit bound is the contract's; it is measured with ``MARGIN`` on top because this
suite runs on a shared 2-core machine.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from starlette.types import Message

from fastapi_streamkit import EventStream, ServerSentEvent, Stream, request_shutdown
from fastapi_streamkit._shutdown import open_streams
from tests._server import serve, serve_process
from tests.apps.wire import ASGICall, Marks, RawClient, wait_for

ROOT = Path(__file__).resolve().parents[1]  # where `tests.apps` is importable from
CLIENTS = 50
EXIT_BOUND = 2.0  # seconds, the contract's
MARGIN = 0.5  # seconds on top: process teardown on a shared 2-core machine


@pytest.mark.parametrize(
    ("sig", "http", "loop"),
    [
        (signal.SIGTERM, "h11", "asyncio"),
        (signal.SIGTERM, "httptools", "uvloop"),
        (signal.SIGINT, "h11", "asyncio"),
    ],
    ids=["SIGTERM-h11-asyncio", "SIGTERM-httptools-uvloop", "SIGINT-h11-asyncio"],
)
def test_signal_ends_open_streams_and_the_server_exits(
    tmp_path: Path, sig: signal.Signals, http: str, loop: str
) -> None:
    markers = tmp_path / "markers"
    env = {"STREAMKIT_MARKERS": str(markers)}
    args = ("--http", http, "--loop", loop, "--app-dir", str(ROOT))
    with serve_process("tests.apps.shutdown_app:app", *args, env=env) as (proc, port):
        # A stream that opens and closes first: the chain must survive the last stream ending.
        earlier = RawClient(port, "/events/-1")
        earlier.read_head()
        earlier.read_body_until(b"\n\n")
        earlier.close()
        wait_for(lambda: markers.exists() and markers.read_text() == "-1\n", what="first close")
        markers.unlink()
        clients = [RawClient(port, f"/events/{i}") for i in range(CLIENTS)]
        try:
            for i, client in enumerate(clients):
                assert client.read_head()[0] == 200
                assert client.read_body_until(b"\n\n") == f"data: ready\nid: {i}\n\n".encode()
            proc.send_signal(sig)
            sent = time.monotonic()
            proc.wait(timeout=10)
            elapsed = time.monotonic() - sent
            ends = [client.read_to_end() for client in clients]
        finally:
            for client in clients:
                client.close()
        output = proc.stdout.read().decode() if proc.stdout else ""
    assert elapsed < EXIT_BOUND + MARGIN, f"exit took {elapsed:.2f}s\n{output}"
    assert proc.returncode in (0, -sig), output  # uvicorn re-raises the signal it caught
    assert all(terminated for _, terminated in ends), "a client missed the terminator 0\\r\\n\\r\\n"
    assert all(client.raw.endswith(b"0\r\n\r\n") for client in clients)
    assert sorted(markers.read_text().split(), key=int) == [str(i) for i in range(CLIENTS)]
    assert "Traceback" not in output and "ERROR" not in output, output


def _shutdown_app(marks: Marks) -> FastAPI:
    app = FastAPI()

    @app.get("/events/{name}")
    async def events(name: str) -> EventStream:
        async def source() -> AsyncIterator[str]:
            try:
                yield "ready"
                await anyio.sleep_forever()
            finally:
                marks.hit(f"{name}:finally")

        return EventStream(source())

    return app


def test_request_shutdown_ends_streams_open_at_the_call_in_a_threaded_server() -> None:
    marks = Marks()
    with serve(_shutdown_app(marks)) as running:
        first = [RawClient(running.port, f"/events/a{i}") for i in range(5)]
        later = None
        try:
            for client in first:
                client.read_head()
                client.read_body_until(b"\n\n")
            request_shutdown()  # from the test thread: the server's loop runs in another
            for client in first:
                body, terminated = client.read_to_end()
                assert terminated and body == b""
            wait_for(lambda: all(marks.count(f"a{i}:finally") for i in range(5)))
            # A stream opened after the call is not affected.
            later = RawClient(running.port, "/events/b", timeout=0.3)
            assert later.read_head()[0] == 200
            assert later.read_body_until(b"\n\n") == b"data: ready\n\n"
            with pytest.raises(TimeoutError):
                later.read_chunk()
            assert marks.count("b:finally") == 0
        finally:
            for client in [*first, *([later] if later else [])]:
                client.close()
        wait_for(lambda: marks.count("b:finally") == 1, what="the later stream closed")


# -- in-process: the chained handler, restored only if still ours ----------------------------


@pytest.fixture
def recorded_sigterm() -> Iterator[list[int]]:
    """A Python SIGTERM handler that records calls (so a broken chain cannot kill pytest)."""
    calls: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    original = signal.signal(signal.SIGTERM, record)
    try:
        yield calls
    finally:
        signal.signal(signal.SIGTERM, original)


async def _idle_source(marks: Marks, name: str) -> AsyncIterator[str]:
    try:
        yield "ready"
        await anyio.sleep_forever()
    finally:
        marks.hit(f"{name}:finally")


@pytest.mark.anyio
async def test_sigterm_is_chained_while_a_stream_is_open(recorded_sigterm: list[int]) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    marks = Marks()
    call = ASGICall()
    seen: list[Any] = []

    def on_send(message: Message) -> None:
        if message.get("body") == b"data: ready\n\n":
            seen.append(signal.getsignal(signal.SIGTERM))
            signal.raise_signal(signal.SIGTERM)

    call.on_send = on_send
    with anyio.fail_after(5):
        await EventStream(_idle_source(marks, "s"))(call.scope, call.receive, call.send)
    assert seen and seen[0] is not previous  # ours, while the stream was open
    assert recorded_sigterm == [signal.SIGTERM]  # the previous handler was called
    assert call.ended and marks.count("s:finally") == 1  # ended cleanly, source closed
    assert signal.getsignal(signal.SIGTERM) is previous  # restored when the last stream ended
    assert len(open_streams) == 0


@pytest.mark.anyio
async def test_a_handler_installed_meanwhile_is_not_overwritten(
    recorded_sigterm: list[int],
) -> None:
    def other(signum: int, frame: FrameType | None) -> None:
        raise AssertionError("not called in this test")

    marks = Marks()
    call = ASGICall()

    def on_send(message: Message) -> None:
        if message.get("body") == b"data: ready\n\n":
            signal.signal(signal.SIGTERM, other)  # someone else takes over
            call.disconnected.set()

    call.on_send = on_send
    with anyio.fail_after(5):
        await EventStream(_idle_source(marks, "s"))(call.scope, call.receive, call.send)
    assert signal.getsignal(signal.SIGTERM) is other
    assert marks.count("s:finally") == 1 and recorded_sigterm == []


@pytest.mark.anyio
async def test_request_shutdown_in_process() -> None:
    marks = Marks()
    calls = [ASGICall() for _ in range(3)]
    results: dict[int, bool] = {}

    async def run(i: int, response: Any) -> None:
        await response(calls[i].scope, calls[i].receive, calls[i].send)
        results[i] = calls[i].ended

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(run, 0, EventStream(_idle_source(marks, "0")))
            group.start_soon(run, 1, Stream(_idle_source(marks, "1")))
            await anyio.sleep(0.05)
            request_shutdown()
            await anyio.sleep(0.05)
            assert results == {0: True, 1: True}
            group.start_soon(run, 2, EventStream(_idle_source(marks, "2")))
            await anyio.sleep(0.1)
            assert 2 not in results  # opened after the call: still streaming
            calls[2].disconnected.set()
    assert [marks.count(f"{i}:finally") for i in range(3)] == [1, 1, 1]
    assert calls[0].body == b"data: ready\n\n" and calls[1].body == b"ready"
    assert not calls[2].ended


@pytest.mark.anyio
async def test_request_shutdown_before_the_head_still_sends_a_response() -> None:
    """A stream asked to end before its first item still answers: head, then a clean end."""
    started = anyio.Event()

    async def slow_start() -> AsyncIterator[ServerSentEvent]:
        started.set()
        await anyio.sleep_forever()
        yield ServerSentEvent("never")

    call = ASGICall()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(EventStream(slow_start()), call.scope, call.receive, call.send)
            await started.wait()
            request_shutdown()
    assert len(call.starts) == 1 and call.ended and call.body == b""


@pytest.mark.anyio
async def test_request_shutdown_from_a_signal_handler() -> None:
    """A server driven by hand may call it from its own signal handler."""
    marks = Marks()
    call = ASGICall()

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        request_shutdown()

    def on_send(message: Message) -> None:
        if message.get("body") == b"data: ready\n\n":
            signal.raise_signal(signal.SIGUSR1)

    call.on_send = on_send
    original = signal.signal(signal.SIGUSR1, on_usr1)
    try:
        with anyio.fail_after(5):
            await EventStream(_idle_source(marks, "u"))(call.scope, call.receive, call.send)
    finally:
        signal.signal(signal.SIGUSR1, original)
    assert call.ended and marks.count("u:finally") == 1
