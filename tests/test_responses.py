"""fastapi_streamkit.responses: Stream, ASGIStreamingResponse, JSONLines, MsgPackStream.

Disconnects, slow clients, tight sources, bad input and promptness are tested over a real
uvicorn server on 127.0.0.1 with raw-socket clients (they see the chunk framing), the rest
in-process with a scripted ``receive``/``send`` under ``anyio.fail_after``.

Timing bounds are the contract's (100 ms); measured with a margin of ``MARGIN`` seconds on
top, because this suite runs on a shared 2-core machine next to other test runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import msgspec
import pydantic
import pytest
from fastapi import FastAPI
from starlette.background import BackgroundTask
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from fastapi_streamkit import ASGIStreamingResponse, EventStream, JSONLines, MsgPackStream, Stream
from fastapi_streamkit._sources import thread_limiter
from fastapi_streamkit.exceptions import EncodeError, SlowClientError
from tests._server import Running, serve
from tests.apps.wire import ASGICall, Marks, RawClient, wait_for

CONTRACT = 0.1  # seconds: the contract's bound for closing a source / delivering an event
MARGIN = 0.15  # seconds on top of the contract: scheduling noise on a shared 2-core machine
BOUND = CONTRACT + MARGIN


# -- in-process: HEAD, pending disconnect, background, spec 2.3 / 2.4 ------------------------


class Recorder:
    """A source factory that records whether it was called, started and closed."""

    def __init__(self) -> None:
        self.called = self.started = self.closed = 0

    def __call__(self) -> AsyncIterator[bytes]:
        self.called += 1
        return self.gen()

    async def gen(self) -> AsyncIterator[bytes]:
        self.started += 1
        try:
            yield b"body"
        finally:
            self.closed += 1


@pytest.mark.anyio
async def test_head_sends_headers_only_and_never_calls_the_callable() -> None:
    source = Recorder()
    call = ASGICall(method="HEAD")
    response = Stream(source, media_type="text/plain", headers={"x-kind": "head"})
    with anyio.fail_after(5):
        await response(call.scope, call.receive, call.send)
    assert source.called == 0
    assert call.headers()["x-kind"] == "head"
    assert call.headers()["content-type"] == "text/plain; charset=utf-8"
    assert call.body == b""
    assert call.ended and len(call.starts) == 1


@pytest.mark.anyio
async def test_head_never_starts_a_generator() -> None:
    source = Recorder()
    generator = source()
    call = ASGICall(method="HEAD")
    with anyio.fail_after(5):
        await Stream(generator)(call.scope, call.receive, call.send)
    assert (source.started, source.closed) == (0, 0)
    assert call.body == b"" and call.ended


@pytest.mark.anyio
async def test_head_response_with_content_length() -> None:
    source = Recorder()
    response = ASGIStreamingResponse(iterator=source, content_length=42, is_head_response=True)
    call = ASGICall()  # a GET, answered as HEAD because is_head_response=True
    with anyio.fail_after(5):
        await response(call.scope, call.receive, call.send)
    assert call.headers()["content-length"] == "42"
    assert source.called == 0 and call.body == b""


@pytest.mark.anyio
async def test_disconnect_pending_at_start_never_calls_the_callable() -> None:
    source = Recorder()
    call = ASGICall()
    call.requested = True  # the next receive() is the pending disconnect
    call.disconnected.set()
    with anyio.fail_after(5):
        await Stream(source)(call.scope, call.receive, call.send)
    assert source.called == 0
    assert call.body == b""


@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_idle_source_closed_on_disconnect(spec_version: str) -> None:
    """Under 2.4 too: Starlette notices a disconnect there only when a send fails."""
    marks = Marks()

    async def idle() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await anyio.sleep_forever()
        finally:
            marks.hit("finally")

    call = ASGICall(spec_version=spec_version)
    call.on_send = lambda m: call.disconnected.set() if m.get("body") == b"first" else None
    with anyio.fail_after(5):
        await Stream(idle())(call.scope, call.receive, call.send)
    assert marks.count("finally") == 1
    assert call.body == b"first"
    assert not call.ended  # nobody to send the end to
    assert marks.first("finally") - call.times[-1] < BOUND


@pytest.mark.anyio
async def test_spec_2_4_send_failure_stops_the_stream_and_closes_the_source() -> None:
    """An ASGI 2.4 server may report a gone client by failing ``send`` with OSError."""
    marks = Marks()
    sent: list[bytes] = []

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x"
                await anyio.sleep(0.001)
        finally:
            marks.hit("finally")

    async def never() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            if len(sent) == 3:
                raise OSError("client gone")
            sent.append(message["body"])

    call = ASGICall(spec_version="2.4")
    with anyio.fail_after(5):
        await Stream(endless())(call.scope, never, send)
    assert marks.count("finally") == 1
    assert len(sent) == 3


@pytest.mark.anyio
async def test_background_runs_once_after_full_body() -> None:
    runs: list[bytes] = []
    call = ASGICall()

    def task() -> None:
        runs.append(call.body)

    with anyio.fail_after(5):
        await Stream([b"a", b"b"], background=BackgroundTask(task))(
            call.scope, call.receive, call.send
        )
    assert runs == [b"ab"]  # once, after the whole body was sent
    assert call.ended


@pytest.mark.anyio
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_background_runs_once_after_disconnect(sync: bool) -> None:
    runs: list[str] = []
    marks = Marks()

    async def idle() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await anyio.sleep_forever()
        finally:
            marks.hit("finally")

    def sync_source() -> Iterator[bytes]:
        try:
            yield b"first"
            while True:
                time.sleep(0.01)
                yield b""
        finally:
            marks.hit("finally")

    call = ASGICall()
    call.on_send = lambda m: call.disconnected.set() if m.get("body") == b"first" else None
    response = Stream(
        sync_source() if sync else idle(), background=BackgroundTask(runs.append, "bg")
    )
    with anyio.fail_after(5):
        await response(call.scope, call.receive, call.send)
    assert runs == ["bg"]
    assert marks.count("finally") == 1


@pytest.mark.anyio
async def test_tight_source_does_not_starve_other_tasks_and_stops_on_disconnect() -> None:
    marks = Marks()
    ticks = 0

    async def tight() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"0123456789" * 10  # never awaits
        finally:
            marks.hit("finally")

    async def ticker() -> None:
        nonlocal ticks
        while ticks < 20:
            await anyio.lowlevel.checkpoint()
            ticks += 1
        call.disconnected.set()

    call = ASGICall()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(ticker)
            await Stream(tight())(call.scope, call.receive, call.send)
    assert ticks == 20
    assert marks.count("finally") == 1
    assert len(call.body) > 0


@pytest.mark.anyio
async def test_send_body_emits_body_events_only() -> None:
    response = ASGIStreamingResponse(iterator=["a", b"b", memoryview(b"c")])
    call = ASGICall()
    with anyio.fail_after(5):
        await response.send_body(call.send, call.receive)
    assert call.starts == []
    assert call.body == b"abc" and call.ended


# -- cookies, headers, to_asgi_response ------------------------------------------------------


def _starlette_cookies(*calls: dict[str, Any]) -> list[str]:
    reference = Response()
    for kwargs in calls:
        reference.set_cookie(**kwargs)
    return [v.decode() for k, v in reference.raw_headers if k == b"set-cookie"]


COOKIE_FORMS = [
    ({"a": "1", "b": "2"}, [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]),
    (
        [{"key": "s", "value": "v", "max_age": 10, "httponly": True, "samesite": "strict"}],
        [{"key": "s", "value": "v", "max_age": 10, "httponly": True, "samesite": "strict"}],
    ),
    (
        [{"key": "p", "value": "q", "path": "/x", "secure": True}],
        [{"key": "p", "value": "q", "path": "/x", "secure": True}],
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("cookies", "expected"), COOKIE_FORMS, ids=["mapping", "dict", "path"])
@pytest.mark.parametrize("via", ["Stream", "ASGIStreamingResponse", "to_asgi_response"])
async def test_cookies_forms(cookies: Any, expected: list[dict[str, Any]], via: str) -> None:
    app: Any
    if via == "Stream":
        app = Stream(["x"], cookies=cookies)
    elif via == "ASGIStreamingResponse":
        app = ASGIStreamingResponse(iterator=["x"], cookies=cookies)
    else:
        app = Stream(["x"]).to_asgi_response(None, cookies=cookies)
    call = ASGICall()
    with anyio.fail_after(5):
        await app(call.scope, call.receive, call.send)
    (start,) = call.starts
    got = [v.decode() for k, v in start["headers"] if k == b"set-cookie"]
    assert got == _starlette_cookies(*expected)
    assert call.body == b"x"


@pytest.mark.anyio
async def test_to_asgi_response_own_headers_and_status_take_precedence() -> None:
    own_bg: list[str] = []
    response = Stream(
        ["x"],
        status_code=201,
        headers={"x-own": "own", "x-both": "own"},
        media_type="text/own",
        background=BackgroundTask(own_bg.append, "own"),
    )
    passed_bg: list[str] = []
    asgi = response.to_asgi_response(
        None,
        headers={"x-both": "passed", "x-passed": "passed"},
        status_code=202,
        media_type="text/passed",
        background=BackgroundTask(passed_bg.append, "passed"),
    )
    assert isinstance(asgi, ASGIStreamingResponse)
    call = ASGICall()
    with anyio.fail_after(5):
        await asgi(call.scope, call.receive, call.send)
    headers = call.headers()
    assert call.starts[0]["status"] == 201
    assert (headers["x-own"], headers["x-both"], headers["x-passed"]) == ("own", "own", "passed")
    assert headers["content-type"].startswith("text/own")
    assert [n for n, _ in call.starts[0]["headers"]].count(b"x-both") == 1
    assert (own_bg, passed_bg) == (["own"], [])


@pytest.mark.anyio
async def test_to_asgi_response_passed_values_fill_in() -> None:
    passed_bg: list[str] = []
    asgi = Stream(["x"]).to_asgi_response(
        None,
        headers={"x-passed": "1"},
        media_type="text/passed",
        background=BackgroundTask(passed_bg.append, "passed"),
    )
    call = ASGICall()
    with anyio.fail_after(5):
        await asgi(call.scope, call.receive, call.send)
    assert call.headers()["x-passed"] == "1"
    assert call.headers()["content-type"].startswith("text/passed")
    assert passed_bg == ["passed"]


@pytest.mark.anyio
async def test_to_asgi_response_head() -> None:
    source = Recorder()
    asgi = Stream(source).to_asgi_response(None, is_head_response=True)
    call = ASGICall()
    with anyio.fail_after(5):
        await asgi(call.scope, call.receive, call.send)
    assert source.called == 0 and call.body == b"" and call.ended


# -- JSONLines / MsgPackStream ---------------------------------------------------------------


class Point(pydantic.BaseModel):
    x: int
    y: int


@dataclasses.dataclass
class Tag:
    name: str


STAMP = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
ITEM_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")
ITEMS: list[Any] = [
    {"i": 1, "msg": "hello"},
    Point(x=1, y=2),
    Tag("t"),
    [1, "two"],
    "text",
    3.5,
    None,
    {"when": STAMP, "id": ITEM_ID},
]
DECODED: list[Any] = [
    {"i": 1, "msg": "hello"},
    {"x": 1, "y": 2},
    {"name": "t"},
    [1, "two"],
    "text",
    3.5,
    None,
    {"when": "2024-05-06T07:08:09Z", "id": str(ITEM_ID)},
]


async def _run(response: Any, *, spec_version: str = "2.3") -> ASGICall:
    call = ASGICall(spec_version=spec_version)
    with anyio.fail_after(5):
        await response(call.scope, call.receive, call.send)
    return call


@pytest.mark.anyio
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_jsonlines_output(sync: bool) -> None:
    async def agen() -> AsyncIterator[Any]:
        for item in ITEMS:
            yield item

    call = await _run(JSONLines(iter(ITEMS) if sync else agen()))
    assert call.headers()["content-type"] == "application/jsonl"
    lines = call.body.split(b"\n")
    assert lines[-1] == b""  # every document ends with a newline
    assert [msgspec.json.decode(line) for line in lines[:-1]] == DECODED


@pytest.mark.anyio
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_msgpack_stream_output(sync: bool) -> None:
    async def agen() -> AsyncIterator[Any]:
        for item in ITEMS:
            yield item

    call = await _run(MsgPackStream(iter(ITEMS) if sync else agen()))
    assert call.headers()["content-type"] == "application/vnd.msgpack"
    # Concatenated objects + an array32 header = one array of exactly len(ITEMS) objects
    # (msgspec refuses trailing bytes, so nothing else may be in the body).
    array = b"\xdd" + len(ITEMS).to_bytes(4, "big") + call.body
    # MessagePack carries datetimes natively (the timestamp extension), not as ISO strings.
    assert msgspec.msgpack.decode(array) == [*DECODED[:-1], {"when": STAMP, "id": str(ITEM_ID)}]


@pytest.mark.anyio
async def test_stream_chunk_types_and_encoding() -> None:
    call = await _run(
        Stream(["é", b"\xff", memoryview(b"mv"), bytearray(b"ba")], encoding="latin-1")
    )
    assert call.body == b"\xe9\xffmvba"


BAD_ITEMS = [
    (Stream, "ok", 42, b"ok"),
    (JSONLines, {"ok": 1}, object(), b'{"ok":1}\n'),
    (JSONLines, {"ok": 1}, {"bad": object()}, b'{"ok":1}\n'),  # fails midway in the fast path
    (MsgPackStream, {"ok": 1}, object(), b"\x81\xa2ok\x01"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("response_class", "good", "bad", "sent"), BAD_ITEMS)
@pytest.mark.parametrize("pause", [False, True], ids=["same-batch", "after-pause"])
async def test_unencodable_item_raises_encode_error_after_the_head(
    response_class: type[Stream], good: Any, bad: Any, sent: bytes, pause: bool
) -> None:
    """The items ready before the bad one are sent (as Starlette would), nothing after it, no
    half-encoded bytes, no clean end, one response start."""
    marks = Marks()

    async def source() -> AsyncIterator[Any]:
        try:
            yield good
            if pause:
                await anyio.sleep(0.01)
            yield bad
            yield good
        finally:
            marks.hit("finally")

    call = ASGICall()
    with anyio.fail_after(5), pytest.raises(EncodeError) as info:
        await response_class(source())(call.scope, call.receive, call.send)
    assert "object" in str(info.value) or "int" in str(info.value)
    assert call.body == sent
    assert len(call.starts) == 1  # never a second response start
    assert not call.ended  # never a clean end
    assert marks.count("finally") == 1


@pytest.mark.anyio
@pytest.mark.parametrize("pause", [False, True], ids=["same-batch", "after-pause"])
async def test_source_error_after_ready_items(pause: bool) -> None:
    async def source() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"
        if pause:
            await anyio.sleep(0.01)
        raise LookupError("source failed")

    call = ASGICall()
    with anyio.fail_after(5), pytest.raises(LookupError, match="source failed"):
        await Stream(source())(call.scope, call.receive, call.send)
    assert call.body == b"ab" and len(call.starts) == 1 and not call.ended


# -- over uvicorn: disconnects, capacity, slow clients, tight sources, bad input -------------


@dataclasses.dataclass
class Probe:
    """What the server-side sources report to the tests (thread-safe)."""

    marks: Marks = dataclasses.field(default_factory=Marks)
    gates: dict[str, threading.Event] = dataclasses.field(default_factory=dict)
    produced: dict[str, int] = dataclasses.field(default_factory=dict)

    def gate(self, name: str) -> threading.Event:
        return self.gates.setdefault(name, threading.Event())


def make_app(probe: Probe) -> FastAPI:
    app = FastAPI()
    marks = probe.marks

    @app.get("/idle/{name}")
    async def idle(name: str) -> Stream:
        async def source() -> AsyncIterator[bytes]:
            try:
                yield b"first"
                await anyio.sleep_forever()
            finally:
                marks.hit(f"{name}:finally")

        return Stream(source(), background=BackgroundTask(marks.hit, f"{name}:background"))

    @app.get("/sync/{name}")
    async def sync_stream(name: str) -> Stream:
        gate = probe.gate(name)

        def source() -> Iterator[bytes]:
            try:
                yield b"first"
                marks.hit(f"{name}:waiting")
                gate.wait(10)  # "between two yields", until the test opens the gate
                marks.hit(f"{name}:yield")
                yield b"second"
                while True:
                    time.sleep(0.01)
                    yield b"."
            finally:
                marks.hit(f"{name}:finally")

        return Stream(source(), background=BackgroundTask(marks.hit, f"{name}:background"))

    @app.get("/ping")
    def ping() -> str:  # a FastAPI sync endpoint: anyio's default thread limiter
        return "pong"

    @app.get("/stats")
    async def stats() -> dict[str, int]:
        return {
            "tasks": len(asyncio.all_tasks()),
            "borrowed": thread_limiter().borrowed_tokens,
        }

    @app.get("/slow/{name}")
    async def slow(name: str) -> Stream:
        chunk = b"x" * 65536

        async def source() -> AsyncIterator[bytes]:
            try:
                while True:
                    probe.produced[name] = probe.produced.get(name, 0) + len(chunk)
                    yield chunk
                    await anyio.lowlevel.checkpoint()
            finally:
                marks.hit(f"{name}:finally")

        return Stream(source(), send_timeout=0.5)

    @app.get("/tight/{name}")
    async def tight(name: str) -> Stream:
        async def source() -> AsyncIterator[bytes]:
            try:
                while True:
                    yield b"0123456789" * 100  # never awaits
            finally:
                marks.hit(f"{name}:finally")

        return Stream(source())

    @app.get("/bad/{name}/{kind}")
    async def bad(name: str, kind: str) -> Stream:
        async def source() -> AsyncIterator[Any]:
            try:
                yield {"ok": 1} if kind != "raise" else b"ok"
                await anyio.sleep(0.05)  # the first item reaches the client first
                if kind == "raise":
                    raise RuntimeError(f"source failed {name}")
                yield Unencodable() if kind == "json" else BrokerMessage("7-0", b"\xff\xfe")
            finally:
                marks.hit(f"{name}:finally")

        if kind == "sse-message":
            return EventStream(source())
        return Stream(source()) if kind == "raise" else JSONLines(source())

    return app


class Unencodable:
    """No JSON form: the codec must refuse it."""


@dataclasses.dataclass
class BrokerMessage:
    """Shaped like a broker message: ``id`` + ``body``; a non-UTF-8 body cannot be SSE data."""

    id: str
    body: bytes


@dataclasses.dataclass
class Server:
    running: Running
    probe: Probe

    @property
    def port(self) -> int:
        return self.running.port


@pytest.fixture(scope="module", params=["h11-asyncio", "httptools-uvloop"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    probe = Probe()
    http, loop = request.param.split("-")
    with serve(make_app(probe), http=http, loop=loop) as running:
        try:
            yield Server(running, probe)
        finally:
            for gate in probe.gates.values():  # never leave a worker thread waiting
                gate.set()


def _open(server: Server, path: str) -> RawClient:
    client = RawClient(server.port, path)
    status, headers = client.read_head()
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert client.read_chunk() == b"first"
    return client


def test_disconnect_closes_an_idle_async_source_within_100ms(server: Server) -> None:
    marks = server.probe.marks
    client = _open(server, "/idle/async-1")
    client.close()
    gone = time.monotonic()
    wait_for(lambda: marks.count("async-1:finally") == 1, what="the source's finally")
    assert marks.first("async-1:finally") - gone < BOUND
    wait_for(lambda: marks.count("async-1:background") == 1, what="the background task")
    time.sleep(0.05)
    assert marks.count("async-1:finally") == marks.count("async-1:background") == 1


def test_disconnect_closes_a_sync_source_at_its_next_yield(server: Server) -> None:
    marks = server.probe.marks
    client = _open(server, "/sync/sync-1")
    wait_for(lambda: marks.count("sync-1:waiting") == 1, what="the source between two yields")
    client.close()
    time.sleep(0.1)  # the server noticed the disconnect; the source is still between yields
    assert marks.count("sync-1:finally") == 0
    server.probe.gate("sync-1").set()
    wait_for(lambda: marks.count("sync-1:finally") == 1, what="the source's finally")
    assert marks.first("sync-1:finally") - marks.first("sync-1:yield") < BOUND
    wait_for(lambda: marks.count("sync-1:background") == 1, what="the background task")


def _stats(server: Server) -> dict[str, int]:
    response = httpx.get(f"{server.running.url}/stats", timeout=5)
    return dict(response.json())


def test_connect_disconnect_cycles_leave_no_task_and_no_busy_thread(server: Server) -> None:
    marks = server.probe.marks
    baseline = _stats(server)
    assert baseline["borrowed"] == 0
    for i in range(200):
        if i % 2:
            server.probe.gate(f"cycle-{i}").set()  # the sync source runs freely
            client = _open(server, f"/sync/cycle-{i}")
        else:
            client = _open(server, f"/idle/cycle-{i}")
        client.close()

    def finals() -> int:
        return sum(marks.count(f"cycle-{i}:finally") for i in range(200))

    wait_for(lambda: finals() == 200, timeout=10, what="200 sources closed")
    wait_for(lambda: _stats(server) == baseline, timeout=5, what=f"tasks back to {baseline}")
    assert sum(marks.count(f"cycle-{i}:background") for i in range(200)) == 200


def test_open_sync_streams_do_not_block_fastapi_sync_endpoints(server: Server) -> None:
    """anyio's default limiter has 40 threads: 100 blocked sync sources would take them all."""
    marks = server.probe.marks
    names = [f"many-{i}" for i in range(100)]
    clients = []
    try:
        for name in names:
            clients.append(_open(server, f"/sync/{name}"))
        wait_for(
            lambda: all(marks.count(f"{n}:waiting") for n in names),
            timeout=10,
            what="100 sources blocked in worker threads",
        )
        assert _stats(server)["borrowed"] >= 100
        response = httpx.get(f"{server.running.url}/ping", timeout=5)
        assert response.json() == "pong"
    finally:
        for client in clients:
            client.close()
        for name in names:
            server.probe.gate(name).set()
    wait_for(
        lambda: all(marks.count(f"{n}:finally") for n in names),
        timeout=10,
        what="100 sources closed",
    )
    wait_for(lambda: _stats(server)["borrowed"] == 0, what="no worker thread busy")


def test_slow_client_is_aborted_by_send_timeout(server: Server) -> None:
    """A client that stops reading behind a tiny receive window: the send blocks, the stream
    is aborted after send_timeout=0.5 s, the source closed; what was produced stays bounded."""
    marks = server.probe.marks
    collect = Collect()
    logging.getLogger("uvicorn.error").addHandler(collect)
    client = RawClient(server.port, "/slow/slow-1", rcvbuf=4096)
    try:
        status, _ = client.read_head()
        assert status == 200
        # ...and never read again.
        wait_for(lambda: marks.count("slow-1:finally") == 1, timeout=10, what="the abort")
        produced = server.probe.produced["slow-1"]
        time.sleep(0.3)
        assert server.probe.produced["slow-1"] == produced  # the source stopped for good
        # Bounded: what fits in the socket buffers plus one batch, not an ever-growing queue.
        assert produced < 16 * 1024 * 1024, produced
        wait_for(lambda: len(collect.records) > 0, what="the abort logged by uvicorn")
    finally:
        client.close()
        logging.getLogger("uvicorn.error").removeHandler(collect)
    errors = [r.exc_info[1] for r in collect.records if r.exc_info]
    assert len(errors) == 1 and isinstance(errors[0], SlowClientError)
    assert httpx.get(f"{server.running.url}/ping", timeout=5).json() == "pong"


def test_slow_client_error_propagates_in_process() -> None:
    marks = Marks()

    async def source() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"x"
                await anyio.lowlevel.checkpoint()
        finally:
            marks.hit("finally")

    async def stuck_send(message: Message) -> None:
        if message["type"] == "http.response.body":
            await anyio.sleep_forever()

    async def main() -> None:
        call = ASGICall()
        with anyio.fail_after(5), pytest.raises(SlowClientError, match="send_timeout=0.2"):
            await Stream(source(), send_timeout=0.2)(call.scope, call.receive, stuck_send)

    anyio.run(main)
    assert marks.count("finally") == 1


def test_tight_source_does_not_freeze_the_server(server: Server) -> None:
    marks = server.probe.marks
    client = RawClient(server.port, "/tight/tight-1")
    stop = threading.Event()
    received = 0

    def read() -> None:
        nonlocal received
        client.read_head()
        while not stop.is_set():
            chunk = client.read_chunk()
            assert chunk is not None
            received += len(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: received > 1_000_000, timeout=10, what="the tight stream flowing")
        for _ in range(3):  # answered while the tight source streams
            assert httpx.get(f"{server.running.url}/ping", timeout=5).json() == "pong"
        assert marks.count("tight-1:finally") == 0
    finally:
        stop.set()
        reader.join(5)
        client.close()
    wait_for(lambda: marks.count("tight-1:finally") == 1, what="the tight source stopped")


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize(
    ("kind", "error"),
    [("raise", RuntimeError), ("json", EncodeError), ("sse-message", EncodeError)],
)
def test_bad_input_aborts_the_transfer_and_is_logged_once(
    server: Server, kind: str, error: type[Exception]
) -> None:
    name, marks = f"bad-{kind}", server.probe.marks
    collect = Collect()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn.error")]
    for logger in loggers:  # uvicorn.error does not propagate under uvicorn's log config
        logger.addHandler(collect)
    try:
        client = RawClient(server.port, f"/bad/{name}/{kind}")
        status, _ = client.read_head()
        assert status == 200
        body, terminated = client.read_to_end()  # bounded by the socket timeout: no hang
        client.close()
        assert not terminated  # a truncated transfer, never a clean end
        assert b"HTTP/1.1" not in client.raw.partition(b"\r\n\r\n")[2]  # no second response
        assert body in (b"ok", b'{"ok":1}\n', b'data: {"ok":1}\n\n')
        wait_for(lambda: marks.count(f"{name}:finally") == 1, what="the source closed")
        time.sleep(0.1)  # let any second log record arrive
    finally:
        for logger in loggers:
            logger.removeHandler(collect)
    logged = [r for r in collect.records if r.exc_info and isinstance(r.exc_info[1], error)]
    assert len(logged) == 1, [r.getMessage() for r in collect.records]
    assert logged[0].exc_info is not None and logged[0].exc_info[2] is not None  # a traceback
    errors = [r for r in collect.records if r.levelno >= logging.ERROR]
    assert errors == logged


# -- promptness behind middleware, on both uvicorn stacks and in-process --------------------

EVENTS = 2  # spaced 0.4 s apart: more than BOUND, so an event held back until the next fails


def prompt_app() -> FastAPI:
    """Each item carries the monotonic time it was yielded; the source idles between items."""
    app = FastAPI()

    async def timed(render: Any) -> AsyncIterator[Any]:
        for _ in range(EVENTS):
            yield render(time.monotonic())
            await anyio.sleep(0.4)
        await anyio.sleep_forever()

    @app.get("/prompt/text")
    async def text() -> Stream:
        return Stream(timed(lambda t: f"{t!r}\n"), media_type="text/plain")

    @app.get("/prompt/sse")
    async def sse() -> EventStream:
        return EventStream(timed(lambda t: {"t": t}))

    async def tag(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers["x-middleware"] = "base"
        return response

    app.add_middleware(GZipMiddleware, minimum_size=1)
    app.add_middleware(BaseHTTPMiddleware, dispatch=tag)
    return app


class Timings:
    """Splits the (decompressed) body into events and notes each one's delay."""

    def __init__(self, kind: str, gzipped: bool) -> None:
        self.sep = b"\n\n" if kind == "sse" else b"\n"
        self.gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS) if gzipped else None
        self.pending = b""
        self.delays: list[float] = []

    def feed(self, data: bytes, arrived: float) -> None:
        self.pending += self.gunzip.decompress(data) if self.gunzip else data
        while self.sep in self.pending:
            event, _, self.pending = self.pending.partition(self.sep)
            text = event.decode()
            stamp = float(text) if self.sep == b"\n" else msgspec.json.decode(text[6:])["t"]
            self.delays.append(arrived - stamp)


@pytest.fixture(scope="module", params=["h11-asyncio", "httptools-uvloop"])
def prompt_server(request: pytest.FixtureRequest) -> Iterator[Running]:
    http, loop = request.param.split("-")
    with serve(prompt_app(), http=http, loop=loop) as running:
        yield running


@pytest.mark.parametrize("kind", ["text", "sse"])
def test_events_are_prompt_over_uvicorn_behind_middleware(
    prompt_server: Running, kind: str
) -> None:
    client = RawClient(prompt_server.port, f"/prompt/{kind}", headers={"Accept-Encoding": "gzip"})
    try:
        status, headers = client.read_head()
        assert status == 200 and headers["x-middleware"] == "base"
        gzipped = headers.get("content-encoding") == "gzip"
        assert gzipped is (kind == "text")  # Starlette's GZip leaves text/event-stream alone
        timings = Timings(kind, gzipped)
        while len(timings.delays) < EVENTS:
            chunk = client.read_chunk()
            assert chunk is not None
            timings.feed(chunk, time.monotonic())
    finally:
        client.close()
    assert max(timings.delays) < BOUND, timings.delays


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["text", "sse"])
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_events_are_prompt_in_process_behind_middleware(kind: str, spec_version: str) -> None:
    call = ASGICall(
        path=f"/prompt/{kind}", spec_version=spec_version, headers=[(b"accept-encoding", b"gzip")]
    )
    timings: Timings | None = None

    def on_send(message: Message) -> None:
        nonlocal timings
        if message["type"] == "http.response.start":
            headers = dict(message["headers"])
            timings = Timings(kind, headers.get(b"content-encoding") == b"gzip")
        elif timings is not None:
            timings.feed(bytes(message.get("body", b"")), time.monotonic())
            if len(timings.delays) >= EVENTS:
                call.disconnected.set()

    call.on_send = on_send
    with anyio.fail_after(10):
        await prompt_app()(call.scope, call.receive, call.send)
    assert timings is not None and len(timings.delays) == EVENTS
    assert max(timings.delays) < BOUND, timings.delays


# -- ordering under interleaving: batching, listener flushes and slow sends ------------------


def _pattern(i: int) -> int:
    return (i * 7919) % 13  # deterministic, irregular


@pytest.mark.anyio
@pytest.mark.parametrize("response_class", [JSONLines, EventStream])
async def test_items_arrive_complete_and_in_order(response_class: type[Stream]) -> None:
    """Mixed fast-path (dict) and other items, a source that sometimes suspends, and a send
    that sometimes blocks: the listener's flushes and the body's sends never reorder data."""
    count = 3000

    async def source() -> AsyncIterator[Any]:
        for i in range(count):
            yield {"i": i} if i % 3 else [i]
            if _pattern(i) == 0:
                await anyio.lowlevel.checkpoint()
            elif _pattern(i) == 1:
                await anyio.sleep(0.001)

    sends = 0

    async def send(message: Message) -> None:
        nonlocal sends
        sends += 1
        call.messages.append(message)
        if sends % 4 == 0:
            await anyio.sleep(0.001)  # backpressure now and then

    call = ASGICall()
    with anyio.fail_after(20):
        await response_class(source())(call.scope, call.receive, send)
    assert call.ended
    if response_class is EventStream:
        lines = [e.removeprefix(b"data: ") for e in call.body.split(b"\n\n") if e]
    else:
        lines = call.body.splitlines()
    decoded = [msgspec.json.decode(line) for line in lines]
    assert decoded == [{"i": i} if i % 3 else [i] for i in range(count)]
    assert sends < count  # ready items were batched


def test_items_arrive_complete_and_in_order_over_uvicorn() -> None:
    count = 20000
    app = FastAPI()

    @app.get("/numbers")
    async def numbers() -> JSONLines:
        async def source() -> AsyncIterator[Any]:
            for i in range(count):
                yield {"i": i}
                if _pattern(i) == 0:
                    await anyio.lowlevel.checkpoint()

        return JSONLines(source())

    with serve(app) as running:
        client = RawClient(running.port, "/numbers")
        try:
            assert client.read_head()[0] == 200
            body, terminated = client.read_to_end()
        finally:
            client.close()
    assert terminated
    assert [msgspec.json.decode(line)["i"] for line in body.splitlines()] == list(range(count))
