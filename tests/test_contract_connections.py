"""DESIGN.md "Connections — connection.py", sentence by sentence, as an outside author.

Black-box: only names imported from ``fastapi_streamkit`` (plus FastAPI / Starlette / the
clients). WebSocket behaviour runs over a real uvicorn server with the `websockets` client
or raw sockets; every wait is bounded. test_connection.py covers the main paths; this file
adds the edges an acceptance-test author would try: every receive method at the size
boundary, the second receive after a refusal, Origin look-alikes, repeated Accept lines.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import inspect
import json
import logging
import os
import queue
import socket
import typing
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import msgspec
import pydantic
import pytest
from fastapi import APIRouter, Depends, FastAPI
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request as StarletteRequest
from starlette.websockets import WebSocket as StarletteWebSocket
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from fastapi_streamkit import Accept, Request, StreamkitError, StreamRoute, StreamRouter, WebSocket
from tests._server import Running, serve

pytestmark = pytest.mark.anyio

KW = inspect.Parameter.KEYWORD_ONLY
POS = inspect.Parameter.POSITIONAL_OR_KEYWORD
EMPTY = inspect.Parameter.empty


# -- names and signatures ----------------------------------------------------------------------


def _params(func: Any) -> list[tuple[str, Any, Any]]:
    return [
        (p.name, p.kind, p.default)
        for p in inspect.signature(func).parameters.values()
        if p.name != "self"
    ]


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (Accept.best_match, [("options", POS, EMPTY), ("default", POS, None)]),
        (Accept.accepts, [("media_type", POS, EMPTY)]),
        (Request.msgpack, []),
        (Request.set_session, [("value", POS, EMPTY)]),
        (Request.clear_session, []),
        (WebSocket.set_session, [("value", POS, EMPTY)]),
        (WebSocket.clear_session, []),
        (WebSocket.receive_data, [("mode", POS, EMPTY)]),
        (WebSocket.iter_data, [("mode", POS, "text")]),
        (WebSocket.receive_msgpack, []),
        (WebSocket.iter_msgpack, []),
        (
            WebSocket.send_data,
            [("data", POS, EMPTY), ("mode", POS, "text"), ("encoding", POS, "utf-8")],
        ),
        (
            WebSocket.send_json,
            [("data", POS, EMPTY), ("mode", POS, "text"), ("serializer", KW, None)],
        ),
    ],
    ids=lambda v: getattr(v, "__qualname__", "") if callable(v) else "",
)
def test_signatures_match_the_contract(func: Any, expected: list[tuple[str, Any, Any]]) -> None:
    assert _params(func) == expected


def test_classes_extend_starlettes() -> None:
    assert issubclass(Request, StarletteRequest)
    assert issubclass(WebSocket, StarletteWebSocket)
    assert WebSocket.max_message_size == 1_048_576
    assert typing.get_type_hints(WebSocket)["max_message_size"] == (int | None)
    assert [p.name for p in inspect.signature(WebSocket.send_msgpack).parameters.values()][:2] == [
        "self",
        "data",
    ]
    assert "websocket_origins" in inspect.signature(StreamRouter).parameters
    for name in ("receive_msgpack", "send_msgpack", "send_json", "send_data", "receive_data"):
        assert inspect.iscoroutinefunction(getattr(WebSocket, name)), name
    assert inspect.iscoroutinefunction(Request.msgpack)


# -- Accept ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "acceptable", "refused"),
    [
        ("*/*;q=0", [], ["text/html", "application/json"]),
        ("text/html;q=0, */*", ["application/json", "image/png"], ["text/html"]),
        ("text/*;q=0, text/plain", ["text/plain"], ["text/html", "text/csv"]),
        ("application/json;q=0.000", [], ["application/json"]),
        ("application/json;q=0.001", ["application/json"], []),
        ("text/html ; q=0 , application/*", ["application/xml"], ["text/html"]),
        ("Application/JSON", ["application/json", "APPLICATION/json"], ["text/json"]),
        ("text/html;level=1;q=0, text/html", ["text/html"], ["text/html;level=1"]),
        ("image/*", ["image/png", "image/webp"], ["text/plain"]),
    ],
)
def test_accepts_with_q_zero_and_wildcards(
    header: str, acceptable: list[str], refused: list[str]
) -> None:
    accept = Accept(header)
    for media_type in acceptable:
        assert accept.accepts(media_type), (header, media_type)
    for media_type in refused:
        assert not accept.accepts(media_type), (header, media_type)


@pytest.mark.parametrize(
    ("header", "options", "default", "expected"),
    [
        ("*/*;q=0", ["text/html"], "fallback", "fallback"),
        ("text/html;q=0", ["text/html"], None, None),
        (
            "text/html;q=0.2, application/json;q=0.9",
            ["text/html", "application/json"],
            None,
            "application/json",
        ),
        ("*/*;q=0.1, text/csv", ["application/json", "text/csv"], None, "text/csv"),
        ("*/*", ["b/b", "a/a"], None, "b/b"),  # a tie: the server's first option
        ("text/html", [], "d/d", "d/d"),
    ],
)
def test_best_match(
    header: str, options: list[str], default: str | None, expected: str | None
) -> None:
    assert Accept(header).best_match(options, default=default) == expected
    assert Accept(header).best_match(options, default) == expected


def _plain_request(headers: list[tuple[bytes, bytes]], body: bytes = b"") -> Request:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    return Request(scope, receive)


def test_request_accept_and_content_type() -> None:
    request = _plain_request([(b"content-type", b'Application/MsgPack; charset="utf-8"')])
    assert request.accept.accepts("anything/else")  # no Accept header: everything
    assert request.accept.best_match(["a/b", "c/d"]) == "a/b"
    assert request.content_type == ("application/msgpack", {"charset": "utf-8"})
    assert isinstance(request.accept, Accept)
    assert _plain_request([]).content_type == ("", {})


def test_accept_header_sent_as_several_field_lines() -> None:
    """RFC 9110 5.3: repeated field lines are one comma-separated list."""
    request = _plain_request([(b"accept", b"text/html;q=0"), (b"accept", b"application/json")])
    assert not request.accept.accepts("text/html")
    assert request.accept.accepts("application/json")
    assert not request.accept.accepts("image/png")
    assert request.accept.best_match(["text/html", "application/json"]) == "application/json"


# -- Request.msgpack ---------------------------------------------------------------------------


def _msgpack_app() -> FastAPI:
    router = StreamRouter()

    async def decoded(request: Request) -> Any:
        return await request.msgpack()

    @router.post("/endpoint")
    async def endpoint(request: Request) -> Any:
        return {"body": await request.msgpack()}

    @router.post("/dependency")
    async def dependency(body: Any = Depends(decoded)) -> Any:
        return {"body": body}

    app = FastAPI()
    app.include_router(router, prefix="/mp")
    return app


@pytest.fixture(scope="module")
def msgpack_server() -> Iterator[Running]:
    with serve(_msgpack_app(), log_config=None) as running:
        yield running


@pytest.mark.parametrize("where", ["endpoint", "dependency"])
@pytest.mark.parametrize(
    ("body", "status"),
    [
        (msgspec.msgpack.encode({"a": [1, 2.5, "x", None]}), 200),
        (b"", 400),
        (b"\xc1", 400),  # never used
        (b"\x92\x01", 400),  # a truncated array
        (b"\x01\x02", 400),  # two objects: trailing data
        (b'{"json": 1}', 400),  # JSON is not MessagePack
    ],
)
def test_msgpack_body_or_400_with_a_reason(
    msgpack_server: Running,
    where: str,
    body: bytes,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    response = httpx.post(
        f"{msgpack_server.url}/mp/{where}",
        content=body,
        headers={"content-type": "application/vnd.msgpack"},
        timeout=5,
    )
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json() == {"body": {"a": [1, 2.5, "x", None]}}
    else:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and len(detail) > 10
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("body", [b"", b"\xc1", b"\x92\x01", b"\x01\x02"])
async def test_msgpack_raises_http_exception_400_in_process(body: bytes) -> None:
    from starlette.exceptions import HTTPException

    request = _plain_request([(b"content-type", b"application/vnd.msgpack")], body)
    with pytest.raises(HTTPException) as raised:
        await request.msgpack()
    assert raised.value.status_code == 400
    assert isinstance(raised.value.detail, str) and raised.value.detail
    good = _plain_request([], msgspec.msgpack.encode({"k": [1, "x"]}))
    assert await good.msgpack() == {"k": [1, "x"]}


# -- sessions ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Prefs:
    theme: str


class User(pydantic.BaseModel):
    name: str
    joined: dt.date


def _session_app(with_middleware: bool) -> FastAPI:
    router = StreamRouter()

    @router.post("/set/{kind}")
    def set_session(kind: str, request: Request) -> None:
        values: dict[str, Any] = {
            "dict": {"a": 1},
            "model": User(name="ann", joined=dt.date(2024, 1, 2)),
            "dataclass": Prefs(theme="dark"),
        }
        request.set_session(values[kind])

    @router.get("/get")
    def get_session(request: Request) -> dict[str, Any]:
        return dict(request.session)

    @router.post("/clear")
    def clear(request: Request) -> None:
        request.clear_session()

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            websocket.set_session({"from": "ws"})
            await websocket.send_json({"ok": dict(websocket.session)})
        except Exception as exc:
            await websocket.send_json(
                {
                    "error": type(exc).__name__,
                    "ours": isinstance(exc, StreamkitError),
                    "msg": str(exc),
                }
            )
        await websocket.close()

    app = FastAPI()
    app.include_router(router)
    if with_middleware:
        app.add_middleware(SessionMiddleware, secret_key="contract")
    return app


def test_set_session_and_clear_session_with_session_middleware() -> None:
    with serve(_session_app(True)) as running, httpx.Client(base_url=running.url) as client:
        for kind, expected in [
            ("dict", {"a": 1}),
            ("model", {"name": "ann", "joined": "2024-01-02"}),
            ("dataclass", {"theme": "dark"}),
        ]:
            assert client.post(f"/set/{kind}").status_code == 200
            assert client.get("/get").json() == expected
        cleared = client.post("/clear")
        assert cleared.status_code == 200
        assert "max-age=0" in cleared.headers["set-cookie"].lower() or (
            "expires=thu, 01 jan 1970" in cleared.headers["set-cookie"].lower()
        )
        assert client.get("/get").json() == {}


async def test_sessions_without_middleware_are_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = _session_app(False)
    transport = httpx.ASGITransport(app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for path in ("/set/dict", "/clear"):
            with pytest.raises(StreamkitError, match="SessionMiddleware"), anyio.fail_after(5):
                await client.post(path)
    with serve(app, log_config=None) as running:
        async with _connect(running, "/ws") as ws:
            reply = json.loads(await ws.recv())
    assert reply["ours"] is True and "SessionMiddleware" in reply["msg"]


# -- WebSocket: the size limit on every receive method, and what comes after ------------------

LIMIT = 64
RECEIVERS: dict[str, str] = {
    # method call -> the kind of frame it reads
    "receive": "text",
    "receive_text": "text",
    "receive_bytes": "binary",
    "receive_json": "text",
    "receive_json-binary": "binary",
    "receive_data-text": "text",
    "receive_data-binary": "binary",
    "receive_msgpack": "binary",
    "iter_text": "text",
    "iter_bytes": "binary",
    "iter_json": "text",
    "iter_json-binary": "binary",
    "iter_data": "text",
    "iter_data-binary": "binary",
    "iter_msgpack": "binary",
}


def _frame(kind: str, method: str, size: int) -> str | bytes:
    """A frame of exactly ``size`` bytes that ``method`` decodes."""
    if "msgpack" in method:
        return b"\xc4" + bytes([size - 2]) + b"x" * (size - 2)  # bin 8
    if "json" in method:
        text = '"' + "é" * ((size - 2) // 2) + "x" * ((size - 2) % 2) + '"'  # 2-byte chars
    else:
        text = "é" * (size // 2) + "x" * (size % 2)
    assert len(text.encode()) == size
    return text if kind == "text" else text.encode()


async def _call(websocket: WebSocket, method: str) -> Any:
    name, _, mode = method.partition("-")
    if name == "receive":
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message["code"], message.get("reason"))
        return message.get("text") or message.get("bytes")
    args = [mode] if mode else []
    if name == "receive_data" and not mode:
        args = ["text"]
    return await getattr(websocket, name)(*args)


def _size(value: Any) -> int:
    if isinstance(value, (bytes, str)):
        return len(value.encode() if isinstance(value, str) else value)
    return len(json.dumps(value, ensure_ascii=False).encode())


def _limits_app(results: queue.Queue[tuple[str, list[Any]]]) -> FastAPI:
    router = StreamRouter()

    @router.websocket("/limit/{method}")
    async def limit(websocket: WebSocket, method: str) -> None:
        websocket.max_message_size = LIMIT
        await websocket.accept()
        outcome: list[Any] = []
        name, _, mode = method.partition("-")
        if name.startswith("iter_"):
            iterator = getattr(websocket, name)(*([mode] if mode else []))
            async for value in iterator:
                await websocket.send_text(str(_size(value)))
            outcome.append("stopped")
        else:
            try:
                while True:
                    await websocket.send_text(str(_size(await _call(websocket, method))))
            except WebSocketDisconnect as exc:
                outcome.append(("raised", exc.code, bool(exc.reason)))
        for again in ("receive_text", "receive_bytes", "receive_json", "receive_msgpack"):
            try:
                await getattr(websocket, again)()
                outcome.append((again, "returned"))  # pragma: no cover - a failure
            except WebSocketDisconnect as exc:
                outcome.append((again, exc.code))
        results.put((method, outcome))

    @router.websocket("/decode/{method}")
    async def decode(websocket: WebSocket, method: str) -> None:
        await websocket.accept()
        name, _, mode = method.partition("-")
        outcome: list[Any] = []
        if name.startswith("iter_"):
            async for value in getattr(websocket, name)(*([mode] if mode else [])):
                await websocket.send_json({"got": value})
            outcome.append("stopped")
        else:
            try:
                while True:
                    await websocket.send_json({"got": await _call(websocket, method)})
            except WebSocketDisconnect as exc:
                outcome.append(("raised", exc.code, bool(exc.reason)))
        for again in ("receive_text", "receive_json"):
            try:
                await getattr(websocket, again)()
            except WebSocketDisconnect as exc:
                outcome.append((again, exc.code))
        results.put((method, outcome))

    @router.websocket("/uncaught")
    async def uncaught(websocket: WebSocket) -> None:  # lets WebSocketDisconnect escape
        websocket.max_message_size = LIMIT
        await websocket.accept()
        while True:
            await websocket.send_json(await websocket.receive_json())

    app = FastAPI()
    app.include_router(router, prefix="/p", dependencies=[Depends(lambda: None)])
    return app


@pytest.fixture(scope="module")
def limits_server() -> Iterator[tuple[Running, queue.Queue[tuple[str, list[Any]]]]]:
    results: queue.Queue[tuple[str, list[Any]]] = queue.Queue()
    with serve(_limits_app(results), log_config=None) as running:
        yield running, results


def _connect(running: Running, path: str, **kwargs: Any) -> Any:
    url = f"ws://127.0.0.1:{running.port}{path}"
    return connect(url, open_timeout=5, close_timeout=5, max_size=None, **kwargs)


async def _closed(client: Any) -> Any:
    with pytest.raises(ConnectionClosed) as closed, anyio.fail_after(5):
        await client.recv()
    assert closed.value.rcvd is not None, "the server did not send a close frame"
    return closed.value.rcvd


async def _result(results: queue.Queue[tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
    return await anyio.to_thread.run_sync(lambda: results.get(timeout=5))


@pytest.mark.parametrize("method", list(RECEIVERS))
async def test_every_receive_method_enforces_max_message_size(
    limits_server: tuple[Running, queue.Queue[tuple[str, list[Any]]]],
    caplog: pytest.LogCaptureFixture,
    method: str,
) -> None:
    running, results = limits_server
    kind = RECEIVERS[method]
    async with _connect(running, f"/p/limit/{method}") as client:
        await client.send(_frame(kind, method, LIMIT))  # exactly the limit: accepted
        with anyio.fail_after(5):
            assert await client.recv() is not None
        await client.send(_frame(kind, method, LIMIT + 1))  # one byte more (UTF-8 for text)
        close = await _closed(client)
    assert close.code == 1009 and close.reason
    name, outcome = await _result(results)
    assert name == method
    first = "stopped" if method.startswith("iter_") else ("raised", 1009, True)
    assert outcome == [
        first,
        ("receive_text", 1009),
        ("receive_bytes", 1009),
        ("receive_json", 1009),
        ("receive_msgpack", 1009),
    ]
    await anyio.sleep(0.05)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


UNDECODABLE: list[tuple[str, str | bytes]] = [
    ("receive_json", "{not json"),
    ("receive_json", "NaN"),
    ("receive_json-binary", b"\xff\xfe{}"),  # not UTF-8
    ("receive_json-binary", b"[1,"),
    ("receive_msgpack", b"\x92\x01"),
    ("receive_msgpack", b"\xc1"),
    ("iter_json", "[1,"),
    ("iter_json-binary", b"\xff"),
    ("iter_msgpack", b"\x01\x02"),  # trailing data
]


@pytest.mark.parametrize(("method", "bad"), UNDECODABLE)
async def test_undecodable_frame_closes_with_1007_and_a_reason(
    limits_server: tuple[Running, queue.Queue[tuple[str, list[Any]]]],
    caplog: pytest.LogCaptureFixture,
    method: str,
    bad: str | bytes,
) -> None:
    running, results = limits_server
    good: str | bytes = msgspec.msgpack.encode([1]) if "msgpack" in method else "[1]"
    if "binary" in method:
        good = b"[1]"
    async with _connect(running, f"/p/decode/{method}") as client:
        await client.send(good)
        with anyio.fail_after(5):
            assert json.loads(await client.recv()) == {"got": [1]}
        await client.send(bad)
        close = await _closed(client)
    assert close.code == 1007
    assert close.reason and len(close.reason.encode()) <= 123
    name, outcome = await _result(results)
    first = "stopped" if method.startswith("iter_") else ("raised", 1007, True)
    assert (name, outcome) == (method, [first, ("receive_text", 1007), ("receive_json", 1007)])
    await anyio.sleep(0.05)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_an_uncaught_refusal_is_not_a_server_error(
    limits_server: tuple[Running, queue.Queue[tuple[str, list[Any]]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    running, _ = limits_server
    for bad, code in (("x" * (LIMIT + 1), 1009), ("{", 1007)):
        async with _connect(running, "/p/uncaught") as client:
            await client.send("[1]")
            with anyio.fail_after(5):
                assert await client.recv() == "[1]"
            await client.send(bad)
            assert (await _closed(client)).code == code
    await anyio.sleep(0.05)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- WebSocket: sending ------------------------------------------------------------------------


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


class Model(pydantic.BaseModel):
    when: dt.datetime
    id: uuid.UUID


WHEN = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
UID = uuid.UUID(int=7)


def _send_app(seen: list[Any]) -> FastAPI:
    router = StreamRouter()

    def serializer(value: Any) -> Any:
        seen.append(type(value).__name__)
        if isinstance(value, Money):
            return {"cents": value.cents}
        raise TypeError(f"cannot serialize {type(value).__name__}")

    @router.websocket("/send")
    async def send(websocket: WebSocket) -> None:
        await websocket.accept()
        data = {"when": WHEN, "id": UID, "model": Model(when=WHEN, id=UID)}
        await websocket.send_json(data)
        await websocket.send_json(data, mode="binary")
        await websocket.send_json({"m": Money(5), "when": WHEN}, serializer=serializer)
        await websocket.send_json([Money(6)], "binary", serializer=serializer)
        await websocket.send_data("é", mode="binary", encoding="latin-1")
        await websocket.send_data(b"\xe9", mode="text", encoding="latin-1")
        await websocket.send_data("plain")
        await websocket.send_msgpack({"n": [1, 2], "s": "x"})
        await websocket.close()

    app = FastAPI()
    app.include_router(router)
    return app


async def test_send_methods_over_uvicorn() -> None:
    seen: list[Any] = []
    with serve(_send_app(seen)) as running:
        async with _connect(running, "/send") as client:
            with anyio.fail_after(5):
                frames = [await client.recv() for _ in range(8)]
    expected = {
        "when": "2024-01-02T03:04:05Z",
        "id": str(UID),
        "model": {"when": "2024-01-02T03:04:05Z", "id": str(UID)},
    }
    assert isinstance(frames[0], str) and json.loads(frames[0]) == expected
    assert isinstance(frames[1], bytes) and json.loads(frames[1]) == expected
    assert json.loads(frames[2]) == {"m": {"cents": 5}, "when": "2024-01-02T03:04:05Z"}
    assert isinstance(frames[3], bytes) and json.loads(frames[3]) == [{"cents": 6}]
    assert seen == ["Money", "Money"]  # only what the default encoder cannot handle
    assert frames[4] == b"\xe9"
    assert frames[5] == "é"
    assert frames[6] == "plain"
    assert isinstance(frames[7], bytes)
    assert msgspec.msgpack.decode(frames[7]) == {"n": [1, 2], "s": "x"}


async def test_receive_data_modes_and_iter_data_default_text() -> None:
    got: list[Any] = []
    router = StreamRouter()

    @router.websocket("/modes")
    async def modes(websocket: WebSocket) -> None:
        await websocket.accept()
        got.append(await websocket.receive_data("text"))
        got.append(await websocket.receive_data("binary"))
        got.append(await websocket.receive_msgpack())
        async for text in websocket.iter_data():
            got.append(text)
            if text == "last":
                break
        async for value in websocket.iter_msgpack():
            got.append(value)
        got.append("done")

    app = FastAPI()
    app.include_router(router)
    with serve(app) as running:
        async with _connect(running, "/modes") as client:
            await client.send("t")
            await client.send(b"\x00b")
            await client.send(msgspec.msgpack.encode({"k": 1}))
            await client.send("one")
            await client.send("last")
            await client.send(msgspec.msgpack.encode([2]))
        with anyio.fail_after(5):
            while "done" not in got:  # noqa: ASYNC110 - the server thread appends
                await anyio.sleep(0.01)
    assert got == ["t", b"\x00b", {"k": 1}, "one", "last", [2], "done"]


# -- injection ---------------------------------------------------------------------------------


class NeedsRequest:
    """A class dependency: FastAPI passes the connection to ``__init__``."""

    def __init__(self, request: Request) -> None:
        self.request = request


def test_request_injected_into_class_dependencies_after_nested_includes() -> None:
    seen: list[object] = []

    def include_dep(request: Request) -> None:
        seen.append(request)

    for router in (StreamRouter(), APIRouter(route_class=StreamRoute)):

        @router.get("/who")
        def who(request: Request, dep: NeedsRequest = Depends()) -> dict[str, Any]:
            seen.extend([request, dep.request])
            return {"accept": request.accept.best_match(["a/b", "c/d"])}

        middle = APIRouter()
        middle.include_router(router, prefix="/in", dependencies=[Depends(include_dep)])
        app = FastAPI()
        app.include_router(middle, prefix="/out")
        seen.clear()
        with serve(app) as running:
            response = httpx.get(f"{running.url}/out/in/who", headers={"accept": "c/d"}, timeout=5)
        assert response.json() == {"accept": "c/d"}
        assert len(seen) == 3 and all(type(obj) is Request for obj in seen)
        assert len({id(obj) for obj in seen}) == 1


async def test_websocket_injected_after_include_with_prefix_and_dependencies() -> None:
    seen: list[object] = []

    def dep(websocket: WebSocket) -> str:
        seen.append(websocket)
        return "dep"

    router = StreamRouter()

    @router.websocket("/ws/{room}")
    async def ws(websocket: WebSocket, room: str, value: str = Depends(dep)) -> None:
        seen.append(websocket)
        await websocket.accept()
        await websocket.send_msgpack({"room": room, "value": value})
        await websocket.close()

    app = FastAPI()

    def include_dep(websocket: WebSocket) -> None:
        seen.append(websocket)

    app.include_router(router, prefix="/api/v1", dependencies=[Depends(include_dep)])
    with serve(app) as running:
        async with _connect(running, "/api/v1/ws/r") as client:
            with anyio.fail_after(5):
                assert msgspec.msgpack.decode(await client.recv()) == {"room": "r", "value": "dep"}
    assert len(seen) == 3 and all(type(obj) is WebSocket for obj in seen)
    assert len({id(obj) for obj in seen}) == 1


# -- Origin ------------------------------------------------------------------------------------


def _handshake(port: int, path: str, origin: str | None) -> int:
    """The HTTP status a raw WebSocket handshake gets (101 accepted, 403 refused)."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        while b"\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                break
            head += data
    return int(head.split(b" ")[1])


@pytest.fixture(scope="module")
def origin_server() -> Iterator[Running]:
    router = StreamRouter(websocket_origins=["https://app.example", "http://localhost:8000"])

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.close()

    app = FastAPI()
    app.include_router(router, prefix="/o", dependencies=[Depends(lambda: None)])
    with serve(app, log_config=None) as running:
        yield running


@pytest.mark.parametrize(
    ("origin", "status"),
    [
        (None, 101),  # a non-browser client
        ("https://app.example", 101),
        ("http://localhost:8000", 101),
        ("http://app.example", 403),  # another scheme
        ("https://app.example:8443", 403),  # another port
        ("https://evil.app.example", 403),  # a subdomain
        ("https://app.example.evil.test", 403),  # a prefix match is not a match
        ("https://app.exampl", 403),
        ("http://localhost", 403),
        ("http://localhost:8001", 403),
        ("null", 403),  # an opaque origin (sandboxed iframe, file://)
        ("not an origin", 403),
        ("", 403),
    ],
)
def test_websocket_origins(
    origin_server: Running, origin: str | None, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    assert _handshake(origin_server.port, "/o/ws", origin) == status
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
