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
import gc
import logging
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
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

from fastapi_streamkit._sources import thread_limiter
from fastapi_streamkit.exceptions import EncodeError, SlowClientError
from fastapi_streamkit.responses import ASGIStreamingResponse, JSONLines, MsgPackStream, Stream
from fastapi_streamkit.sse import EventStream
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

    async def send(message: dict[str, Any]) -> None:
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
    response = Stream(sync_source() if sync else idle(), background=BackgroundTask(runs.append, "bg"))
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
            await anyio.sleep(0)
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
    ([{"key": "p", "value": "q", "path": "/x", "secure": True}],
     [{"key": "p", "value": "q", "path": "/x", "secure": True}]),
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
ITEMS: list[Any] = [{"i": 1, "msg": "hello"}, Point(x=1, y=2), Tag("t"), [1, "two"], "text",
                    3.5, None, {"when": STAMP, "id": ITEM_ID}]
DECODED: list[Any] = [{"i": 1, "msg": "hello"}, {"x": 1, "y": 2}, {"name": "t"}, [1, "two"],
                      "text", 3.5, None, {"when": "2024-05-06T07:08:09Z", "id": str(ITEM_ID)}]


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
    call = await _run(Stream(["é", b"\xff", memoryview(b"mv"), bytearray(b"ba")], encoding="latin-1"))
    assert call.body == b"\xe9\xffmvba"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("response_class", "bad"),
    [(Stream, 42), (JSONLines, object()), (MsgPackStream, object())],
)
async def test_unencodable_item_raises_encode_error_after_the_head(
    response_class: type[Stream], bad: Any
) -> None:
    marks = Marks()

    async def source() -> AsyncIterator[Any]:
        try:
            yield "ok" if response_class is Stream else {"ok": 1}
            await anyio.sleep(0)
            yield bad
            yield "never"
        finally:
            marks.hit("finally")

    call = ASGICall()
    with anyio.fail_after(5), pytest.raises(EncodeError) as info:
        await response_class(source())(call.scope, call.receive, call.send)
    assert type(bad).__name__ in str(info.value)
    assert len(call.starts) == 1  # never a second response start
    assert not call.ended  # never a clean end
    assert marks.count("finally") == 1
