"""fastapi_streamkit.sse: ServerSentEvent wire format, EventStream items, pings, LastEventID."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pydantic
import pytest
from fastapi import FastAPI
from fastapi.sse import ServerSentEvent as FastAPIEvent
from fastapi.sse import format_sse_event
from starlette.types import Message

from fastapi_streamkit import EventStream, LastEventID, ServerSentEvent
from fastapi_streamkit.exceptions import EncodeError, SlowClientError
from tests._server import serve
from tests.apps.wire import ASGICall, RawClient


class Point(pydantic.BaseModel):
    x: int
    y: int


@dataclasses.dataclass
class Tag:
    name: str
    weight: float


STAMP = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
EVENT_ID = uuid.UUID("12345678-1234-5678-1234-567812345678")

ENCODE_TABLE: list[tuple[str, ServerSentEvent, bytes]] = [
    ("str", ServerSentEvent("hello"), b"data: hello\n\n"),
    ("empty str", ServerSentEvent(""), b"data: \n\n"),
    ("str is not JSON-quoted", ServerSentEvent('say "hi"'), b'data: say "hi"\n\n'),
    ("multi-line LF", ServerSentEvent("a\nb\nc"), b"data: a\ndata: b\ndata: c\n\n"),
    ("multi-line CRLF and CR", ServerSentEvent("a\r\nb\rc"), b"data: a\ndata: b\ndata: c\n\n"),
    ("trailing newline", ServerSentEvent("a\n"), b"data: a\ndata: \n\n"),
    ("unicode", ServerSentEvent("été ✓"), "data: été ✓\n\n".encode()),
    ("dict", ServerSentEvent({"a": 1, "b": [1, 2]}), b'data: {"a":1,"b":[1,2]}\n\n'),
    ("list", ServerSentEvent([1, "x", None]), b'data: [1,"x",null]\n\n'),
    ("int", ServerSentEvent(42), b"data: 42\n\n"),
    ("bool", ServerSentEvent(True), b"data: true\n\n"),
    ("pydantic", ServerSentEvent(Point(x=1, y=2)), b'data: {"x":1,"y":2}\n\n'),
    ("dataclass", ServerSentEvent(Tag("t", 0.5)), b'data: {"name":"t","weight":0.5}\n\n'),
    ("datetime", ServerSentEvent(STAMP), b'data: "2024-05-06T07:08:09Z"\n\n'),
    ("uuid", ServerSentEvent(EVENT_ID), f'data: "{EVENT_ID}"\n\n'.encode()),
    (
        "nested",
        ServerSentEvent({"when": STAMP, "p": Point(x=0, y=0)}),
        b'data: {"when":"2024-05-06T07:08:09Z","p":{"x":0,"y":0}}\n\n',
    ),
    ("no data", ServerSentEvent(event="tick"), b"event: tick\n\n"),
    (
        "event + id",
        ServerSentEvent("d", event="update", id="7"),
        b"event: update\ndata: d\nid: 7\n\n",
    ),
    ("empty id resets", ServerSentEvent("d", id=""), b"data: d\nid: \n\n"),
    ("retry", ServerSentEvent(retry=3000), b"retry: 3000\n\n"),
    ("comment", ServerSentEvent(comment="keep"), b": keep\n\n"),
    ("multi-line comment", ServerSentEvent(comment="a\nb"), b": a\n: b\n\n"),
    (
        "everything",
        ServerSentEvent({"k": "v"}, event="e", id="1-0", retry=10, comment="c"),
        b': c\nevent: e\ndata: {"k":"v"}\nid: 1-0\nretry: 10\n\n',
    ),
]


@pytest.mark.parametrize(
    ("event", "expected"),
    [(e, b) for _, e, b in ENCODE_TABLE],
    ids=[name for name, _, _ in ENCODE_TABLE],
)
def test_encode(event: ServerSentEvent, expected: bytes) -> None:
    assert event.encode() == expected


INVALID = [
    ("newline in event", {"event": "a\nb"}),
    ("CR in event", {"event": "a\rb"}),
    ("newline in id", {"id": "1\n2"}),
    ("CR in id", {"id": "1\r"}),
    ("NUL in id", {"id": "1\x002"}),
]


@pytest.mark.parametrize("kwargs", [k for _, k in INVALID], ids=[n for n, _ in INVALID])
def test_invalid_fields_raise_value_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        ServerSentEvent("x", **kwargs)


def test_unencodable_data_raises_encode_error() -> None:
    with pytest.raises(EncodeError, match="object"):
        ServerSentEvent(object()).encode()


# -- EventStream items ------------------------------------------------------------------------


@dataclasses.dataclass
class BrokerMessage:
    """Shaped like a broker `Message`: an ``id`` and a ``body``."""

    id: str
    body: bytes | str


ITEMS: list[tuple[str, Any, bytes]] = [
    ("ours", ServerSentEvent("x", event="e", id="1"), b"event: e\ndata: x\nid: 1\n\n"),
    ("bytes pass through", b"data: raw\n\n", b"data: raw\n\n"),
    ("str is the data", "line1\nline2", b"data: line1\ndata: line2\n\n"),
    ("dict", {"i": 1, "msg": "hello"}, b'data: {"i":1,"msg":"hello"}\n\n'),
    ("pydantic", Point(x=3, y=4), b'data: {"x":3,"y":4}\n\n'),
    ("dataclass", Tag("t", 1.0), b'data: {"name":"t","weight":1.0}\n\n'),
    ("list", [1, 2], b"data: [1,2]\n\n"),
    ("int", 5, b"data: 5\n\n"),
    ("message bytes body", BrokerMessage("5-0", b'{"x":1}'), b'data: {"x":1}\nid: 5-0\n\n'),
    ("message str body", BrokerMessage("6-0", "a\nb"), b"data: a\ndata: b\nid: 6-0\n\n"),
]

FASTAPI_EVENTS = [
    FastAPIEvent(data={"a": 1}, event="e", id="1"),
    FastAPIEvent(data="hello"),  # FastAPI JSON-encodes str data: data: "hello"
    FastAPIEvent(raw_data="raw\ntext", retry=100),
    FastAPIEvent(comment="just a comment"),
    FastAPIEvent(data=Point(x=1, y=1), id="2"),
]


def _fastapi_bytes(event: FastAPIEvent) -> bytes:
    """FastAPI's own rules: ``data`` as JSON, ``raw_data`` as is."""
    if event.raw_data is not None:
        data = event.raw_data
    elif event.data is not None:
        data = pydantic.TypeAdapter(Any).dump_json(event.data).decode()
    else:
        data = None
    return format_sse_event(
        data_str=data, event=event.event, id=event.id, retry=event.retry, comment=event.comment
    )


async def _stream(response: Any, *, until: int | None = None) -> ASGICall:
    call = ASGICall()
    if until is not None:
        call.on_send = lambda m: call.disconnected.set() if len(call.messages) >= until else None
    with anyio.fail_after(5):
        await response(call.scope, call.receive, call.send)
    return call


@pytest.mark.anyio
@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_event_stream_items(sync: bool) -> None:
    items = [item for _, item, _ in ITEMS] + FASTAPI_EVENTS

    async def agen() -> AsyncIterator[Any]:
        for item in items:
            yield item

    call = await _stream(EventStream(iter(items) if sync else agen()))
    expected = b"".join(wire for _, _, wire in ITEMS)
    expected += b"".join(_fastapi_bytes(e) for e in FASTAPI_EVENTS)
    assert call.body == expected
    assert b'data: "hello"\n' in call.body and b"data: raw\ndata: text\n" in call.body
    assert call.ended


@pytest.mark.anyio
async def test_event_stream_headers_and_retry() -> None:
    call = await _stream(EventStream(["x"], retry=2500, headers={"x-extra": "1"}, status_code=201))
    headers = call.headers()
    assert call.starts[0]["status"] == 201
    assert headers["content-type"].split(";")[0] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert headers["x-extra"] == "1"
    assert call.body == b"retry: 2500\n\ndata: x\n\n"


@pytest.mark.anyio
async def test_event_stream_callable_content() -> None:
    calls: list[int] = []

    def make() -> Iterator[str]:
        calls.append(1)
        return iter(["a", "b"])

    call = await _stream(EventStream(make))
    assert calls == [1] and call.body == b"data: a\n\ndata: b\n\n"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "bad", [object(), BrokerMessage("1-0", b"\xff\xfe")], ids=["unencodable", "non-utf8-body"]
)
async def test_bad_item_aborts_the_stream(bad: Any) -> None:
    closed: list[bool] = []

    async def source() -> AsyncIterator[Any]:
        try:
            yield "ok"
            await anyio.lowlevel.checkpoint()
            yield bad
        finally:
            closed.append(True)

    call = ASGICall()
    with anyio.fail_after(5), pytest.raises(EncodeError):
        await EventStream(source())(call.scope, call.receive, call.send)
    assert call.body == b"data: ok\n\n" and not call.ended and closed == [True]


# -- pings ------------------------------------------------------------------------------------


async def _idle() -> AsyncIterator[str]:
    yield "first"
    await anyio.sleep_forever()


@pytest.mark.anyio
async def test_pings_while_idle() -> None:
    call = await _stream(EventStream(_idle(), ping_interval=0.05), until=6)
    bodies = [m["body"] for m in call.messages if m["type"] == "http.response.body"]
    assert bodies[0] == b"data: first\n\n"
    assert bodies[1:5] == [b": ping\n\n"] * 4
    gaps = [b - a for a, b in zip(call.times[2:], call.times[3:], strict=False)]
    assert min(gaps) > 0.03  # one per interval, not a burst


@pytest.mark.anyio
async def test_no_ping_while_items_flow() -> None:
    async def busy() -> AsyncIterator[str]:
        for i in range(30):
            yield str(i)
            await anyio.sleep(0.01)  # always busier than the 0.1 s ping interval

    call = await _stream(EventStream(busy(), ping_interval=0.1))
    assert b": ping" not in call.body
    assert call.body.count(b"data: ") == 30


@pytest.mark.anyio
async def test_no_ping_when_disabled() -> None:
    call = ASGICall()
    with anyio.move_on_after(0.3):
        await EventStream(_idle(), ping_interval=None)(call.scope, call.receive, call.send)
    assert call.body == b"data: first\n\n"


def test_pings_over_uvicorn() -> None:
    app = FastAPI()

    @app.get("/events")
    async def events() -> EventStream:
        return EventStream(_idle(), ping_interval=0.05)

    with serve(app) as running:
        client = RawClient(running.port, "/events")
        try:
            assert client.read_head()[0] == 200
            body = client.read_body_until(b"\n\n", count=4)
        finally:
            client.close()
    assert body == b"data: first\n\n" + b": ping\n\n" * 3


# -- LastEventID ------------------------------------------------------------------------------


def _last_event_id_app() -> FastAPI:
    app = FastAPI()

    @app.get("/resume")
    async def resume(last_event_id: LastEventID) -> dict[str, str | None]:
        return {"last": last_event_id}

    @app.get("/stream")
    async def stream(last_event_id: LastEventID) -> EventStream:
        start = int(last_event_id) + 1 if last_event_id and last_event_id.isdigit() else 0
        return EventStream(ServerSentEvent(i, id=str(i)) for i in range(start, start + 2))

    return app


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("41", "41"),
        ("5-0", "5-0"),
        ("not a number!", "not a number!"),
        ("", ""),
        ('{"json": 1}', '{"json": 1}'),
    ],
)
async def test_last_event_id(header: str | None, expected: str | None) -> None:
    transport = httpx.ASGITransport(app=_last_event_id_app())
    headers = {} if header is None else {"Last-Event-ID": header}
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/resume", headers=headers)
    assert response.status_code == 200
    assert response.json() == {"last": expected}


@pytest.mark.anyio
async def test_last_event_id_resumes_a_stream() -> None:
    transport = httpx.ASGITransport(app=_last_event_id_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        fresh = await client.get("/stream")
        resumed = await client.get("/stream", headers={"Last-Event-ID": "7"})
    assert fresh.text == "data: 0\nid: 0\n\ndata: 1\nid: 1\n\n"
    assert resumed.text == "data: 8\nid: 8\n\ndata: 9\nid: 9\n\n"


def test_last_event_id_in_openapi_is_an_optional_header() -> None:
    schema = _last_event_id_app().openapi()
    (param,) = schema["paths"]["/resume"]["get"]["parameters"]
    assert param["in"] == "header" and param["name"].lower() == "last-event-id"
    assert not param.get("required", False)


@pytest.mark.anyio
async def test_ping_to_a_stuck_client_times_out() -> None:
    """With send_timeout, a ping that the client does not take aborts the idle stream."""
    closed: list[bool] = []

    async def idle() -> AsyncIterator[str]:
        try:
            yield "first"
            await anyio.sleep_forever()
        finally:
            closed.append(True)

    async def send(message: Message) -> None:
        if message.get("body") == b": ping\n\n":
            await anyio.sleep_forever()  # the client stopped reading

    call = ASGICall()
    with anyio.fail_after(5), pytest.raises(SlowClientError):
        await EventStream(idle(), ping_interval=0.05, send_timeout=0.2)(
            call.scope, call.receive, send
        )
    assert closed == [True]
