"""fastapi_streamkit.connection: Accept, Request, WebSocket, StreamRoute, ConnectionRouter.

WebSocket behaviour is tested over a real uvicorn server with the `websockets` client;
Starlette's own WebSocket suite runs against our class in test_connection_websocket_parity.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import logging
import queue
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import msgspec
import pydantic
import pytest
from fastapi import Depends, FastAPI
from fastapi.routing import APIRouter
from starlette.middleware.sessions import SessionMiddleware
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from fastapi_streamkit import Accept, Request, StreamRoute, WebSocket
from fastapi_streamkit.connection import ConnectionRouter, StreamWebSocketRoute
from fastapi_streamkit.exceptions import UsageError
from fastapi_streamkit.router import StreamRouter
from tests._server import Running, serve

pytestmark = pytest.mark.anyio
LIMIT = WebSocket.max_message_size
assert LIMIT == 1_048_576


# -- Accept ---------------------------------------------------------------------------------

ACCEPT_TABLE = [
    # header, options, expected
    (None, ["application/json", "text/html"], "application/json"),
    ("", ["text/html"], "text/html"),
    ("text/html", ["application/json", "text/html"], "text/html"),
    ("text/html;q=0.5, application/json", ["text/html", "application/json"], "application/json"),
    ("text/*;q=0.8, application/json;q=0.4", ["application/json", "text/plain"], "text/plain"),
    (
        "*/*;q=0.1, application/vnd.msgpack",
        ["application/json", "application/vnd.msgpack"],
        "application/vnd.msgpack",
    ),
    # the most specific range decides: text/html is refused although text/* is welcome
    ("text/*, text/html;q=0", ["text/html", "text/plain"], "text/plain"),
    ("*/*, application/json;q=0", ["application/json"], None),
    ("application/json;q=0", ["application/json"], None),
    # equal weights: the server's order breaks the tie
    (
        "application/json, application/vnd.msgpack",
        ["application/vnd.msgpack", "application/json"],
        "application/vnd.msgpack",
    ),
    ("TEXT/HTML", ["text/html"], "text/html"),
    ("text/html;level=1, text/html;q=0.2", ["text/html", "text/html;level=1"], "text/html;level=1"),
    ("application/json;q=bogus, text/plain", ["application/json", "text/plain"], "text/plain"),
    ("image/png", ["application/json"], None),
]


@pytest.mark.parametrize(("header", "options", "expected"), ACCEPT_TABLE)
def test_accept_best_match(header: str | None, options: list[str], expected: str | None) -> None:
    assert Accept(header).best_match(options) == expected


def test_accept_default_and_accepts() -> None:
    accept = Accept("text/*;q=0.5, text/csv;q=0")
    assert accept.best_match(["image/png"], default="text/plain") == "text/plain"
    assert accept.accepts("text/plain")
    assert not accept.accepts("text/csv")
    assert not accept.accepts("application/json")
    assert [str(r) for r in accept] == ["text/*", "text/csv"]
    assert Accept(None).accepts("anything/at-all")


# -- Request --------------------------------------------------------------------------------


def _request(headers: dict[str, str], body: bytes = b"") -> Request:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # pragma: no cover
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body}

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "headers": raw, "path": "/"}, receive)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("application/json", ("application/json", {})),
        ("Text/HTML; Charset=UTF-8", ("text/html", {"charset": "UTF-8"})),
        ('multipart/form-data; boundary="a;b"', ("multipart/form-data", {"boundary": "a;b"})),
        (None, ("", {})),
    ],
)
def test_request_content_type(header: str | None, expected: tuple[str, dict[str, str]]) -> None:
    headers = {} if header is None else {"content-type": header}
    assert _request(headers).content_type == expected


async def test_request_msgpack_decodes_and_caches() -> None:
    request = _request({}, msgspec.msgpack.encode({"a": [1, 2]}))
    assert await request.msgpack() == {"a": [1, 2]}
    assert await request.msgpack() == {"a": [1, 2]}


def _msgpack_app() -> FastAPI:
    router = APIRouter(route_class=StreamRoute)

    @router.post("/echo")
    async def echo(request: Request) -> Any:
        kind = request.accept.best_match(["application/json", "application/vnd.msgpack"])
        return {"body": await request.msgpack(), "negotiated": kind}

    app = FastAPI()
    app.include_router(router)
    return app


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (msgspec.msgpack.encode({"x": 1}), 200, None),
        (b"\xc1", 400, "invalid MessagePack body"),
        (b"\x92\x01", 400, "invalid MessagePack body"),  # truncated array
        (b"", 400, "empty body"),
    ],
)
def test_request_msgpack_over_uvicorn(
    body: bytes, status: int, detail: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with serve(_msgpack_app(), log_config=None) as server:
        headers = {"content-type": "application/vnd.msgpack", "accept": "application/vnd.msgpack"}
        response = httpx.post(f"{server.url}/echo", content=body, headers=headers, timeout=5)
    assert response.status_code == status
    if detail is None:
        assert response.json() == {"body": {"x": 1}, "negotiated": "application/vnd.msgpack"}
    else:
        assert detail in response.json()["detail"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- sessions -------------------------------------------------------------------------------


class Profile(pydantic.BaseModel):
    user: str
    since: dt.date


def _session_app() -> FastAPI:
    router = APIRouter(route_class=StreamRoute)

    @router.post("/login")
    def login(request: Request) -> None:
        request.set_session({"user": "ann"})

    @router.post("/login-model")
    def login_model(request: Request) -> None:
        request.set_session(Profile(user="bob", since=dt.date(2024, 5, 1)))

    @router.get("/me")
    def me(request: Request) -> dict[str, Any]:
        return dict(request.session)

    @router.post("/logout")
    def logout(request: Request) -> None:
        request.clear_session()

    app = FastAPI()
    app.include_router(router)
    app.add_middleware(SessionMiddleware, secret_key="test-secret")
    return app


def test_set_and_clear_session() -> None:
    with TestClient(_session_app()) as client:
        assert client.get("/me").json() == {}
        client.post("/login")
        assert client.get("/me").json() == {"user": "ann"}
        client.post("/login-model")
        assert client.get("/me").json() == {"user": "bob", "since": "2024-05-01"}
        response = client.post("/logout")
        assert "session=null" in response.headers["set-cookie"]
        assert client.get("/me").json() == {}


def test_session_without_middleware_is_a_clear_error() -> None:
    request = _request({})
    with pytest.raises(UsageError, match="SessionMiddleware"):
        request.set_session({"a": 1})
    with pytest.raises(UsageError, match="SessionMiddleware"):
        request.clear_session()
    with pytest.raises(TypeError, match="mapping, pydantic model or dataclass"):
        _request({}).set_session(42)


def test_websocket_session() -> None:
    router = ConnectionRouter()

    @router.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        websocket.set_session({"seen": True})
        await websocket.send_json(dict(websocket.session))
        websocket.clear_session()
        await websocket.send_json(dict(websocket.session))
        await websocket.close()

    app = FastAPI()
    app.include_router(router)
    app.add_middleware(SessionMiddleware, secret_key="test-secret")
    with TestClient(app) as client, client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"seen": True}
        assert websocket.receive_json() == {}


# -- injection: HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_router",
    [lambda: APIRouter(route_class=StreamRoute), StreamRouter],
    ids=["APIRouter(route_class=StreamRoute)", "StreamRouter"],
)
def test_stream_route_injects_our_request_everywhere(make_router: Any) -> None:
    seen: list[tuple[str, object]] = []

    def include_dep(request: Request) -> None:
        seen.append(("include", request))

    def route_dep(request: Request) -> str:
        seen.append(("route", request))
        return request.accept.best_match(["text/plain", "application/json"]) or "none"

    router = make_router()

    @router.get("/items/{item}")
    def read(item: int, request: Request, kind: str = Depends(route_dep)) -> dict[str, Any]:
        seen.append(("endpoint", request))
        return {"item": item, "kind": kind}

    app = FastAPI()
    app.include_router(router, prefix="/api", dependencies=[Depends(include_dep)])
    with TestClient(app) as client:
        response = client.get("/api/items/3", headers={"accept": "application/json"})
        assert response.json() == {"item": 3, "kind": "application/json"}
        assert [name for name, _ in seen] == ["include", "route", "endpoint"]
        assert all(isinstance(obj, Request) for _, obj in seen)
        assert len({id(obj) for _, obj in seen}) == 1
        head = client.head("/api/items/3")
        assert head.status_code == 200 and head.content == b""


# -- injection: WebSocket -------------------------------------------------------------------


def _injection_router(seen: list[tuple[str, object]], cls: type[ConnectionRouter]) -> Any:
    def route_dep(websocket: WebSocket) -> None:
        seen.append(("route", websocket))

    router = cls(dependencies=[Depends(route_dep)])

    def param_dep(websocket: WebSocket) -> str:
        seen.append(("param", websocket))
        return "dep"

    @router.websocket("/ws/{room}")
    async def endpoint(websocket: WebSocket, room: str, value: str = Depends(param_dep)) -> None:
        seen.append(("endpoint", websocket))
        await websocket.accept()
        await websocket.send_msgpack({"room": room, "value": value})
        await websocket.close()

    return router


def _include_dep(seen: list[tuple[str, object]], name: str) -> Any:
    def dep(websocket: WebSocket) -> None:
        seen.append((name, websocket))

    return Depends(dep)


def _direct_app(seen: list[tuple[str, object]], cls: type) -> tuple[FastAPI, str, list[str]]:
    app = FastAPI()
    app.router.routes.extend(_injection_router(seen, cls).routes)
    return app, "/ws/r1", ["route", "param", "endpoint"]


def _included_app(seen: list[tuple[str, object]], cls: type) -> tuple[FastAPI, str, list[str]]:
    app = FastAPI()
    app.include_router(
        _injection_router(seen, cls), prefix="/p", dependencies=[_include_dep(seen, "include")]
    )
    return app, "/p/ws/r1", ["include", "route", "param", "endpoint"]


def _nested_app(seen: list[tuple[str, object]], cls: type) -> tuple[FastAPI, str, list[str]]:
    middle = APIRouter()
    middle.include_router(
        _injection_router(seen, cls), prefix="/in", dependencies=[_include_dep(seen, "inner")]
    )
    app = FastAPI(dependencies=[_include_dep(seen, "app")])
    app.include_router(middle, prefix="/out", dependencies=[_include_dep(seen, "outer")])
    return app, "/out/in/ws/r1", ["app", "outer", "inner", "route", "param", "endpoint"]


@pytest.mark.parametrize("build", [_direct_app, _included_app, _nested_app])
@pytest.mark.parametrize("cls", [StreamRouter, ConnectionRouter])
async def test_websocket_injection_over_uvicorn(build: Any, cls: type) -> None:
    seen: list[tuple[str, object]] = []
    app, path, order = build(seen, cls)
    with serve(app) as server:
        async with _connect(server, path) as client:
            assert msgspec.msgpack.decode(await client.recv()) == {"room": "r1", "value": "dep"}
    assert [name for name, _ in seen] == order
    assert all(type(obj) is WebSocket for _, obj in seen)
    assert len({id(obj) for _, obj in seen}) == 1


async def test_included_websocket_route_honours_dependency_overrides() -> None:
    def real() -> str:
        return "real"

    router = ConnectionRouter()

    @router.websocket("/ws")
    async def endpoint(websocket: WebSocket, value: str = Depends(real)) -> None:
        await websocket.accept()
        await websocket.send_text(value)
        await websocket.close()

    app = FastAPI()
    app.include_router(router, prefix="/p")
    app.dependency_overrides[real] = lambda: "override"
    with serve(app) as server:
        async with _connect(server, "/p/ws") as client:
            assert await client.recv() == "override"


def test_stream_websocket_route_keeps_frame_models() -> None:
    class In(pydantic.BaseModel):
        text: str

    router = ConnectionRouter()

    @router.websocket("/chat", receive=In, send=Profile)
    async def chat(websocket: WebSocket) -> None: ...  # pragma: no cover

    (route,) = router.routes
    assert isinstance(route, StreamWebSocketRoute)
    assert (route.receive_model, route.send_model) == (In, Profile)


# -- Origin ---------------------------------------------------------------------------------

ORIGIN_TABLE = [
    # origin header sent, accepted?
    (None, True),
    ("https://app.example", True),
    ("https://app.example:443", True),  # the default port is the same origin
    ("https://APP.example", True),
    ("http://app.example", False),
    ("https://app.example:8443", False),
    ("https://app.example.evil.test", False),
    ("https://evil.test", False),
    ("null", False),
    ("http://localhost:8000", True),
    ("http://localhost", False),
]


@pytest.mark.parametrize(("origin", "accepted"), ORIGIN_TABLE)
@pytest.mark.parametrize("included", [False, True])
async def test_websocket_origins(
    origin: str | None, accepted: bool, included: bool, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    router = StreamRouter(websocket_origins=["https://app.example", "http://localhost:8000"])

    @router.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        calls.append("endpoint")
        await websocket.accept()
        await websocket.send_text("hello")
        await websocket.close()

    app = FastAPI()
    if included:
        app.include_router(router, prefix="/p", dependencies=[Depends(lambda: calls.append("d"))])
    else:
        app.router.routes.extend(router.routes)
    path = "/p/ws" if included else "/ws"
    with serve(app, log_config=None) as server:
        if accepted:
            async with _connect(server, path, origin=origin) as client:
                assert await client.recv() == "hello"
            assert calls[-1] == "endpoint"
        else:
            with pytest.raises(InvalidStatus) as refused:
                async with _connect(server, path, origin=origin):
                    pass  # pragma: no cover
            assert refused.value.response.status_code == 403
            assert calls == []  # refused before accept, before any dependency
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("origin", ["https://app.example/", "app.example", "https://a.b/path", ""])
def test_websocket_origins_are_validated(origin: str) -> None:
    with pytest.raises(ValueError, match=r"scheme://host\[:port\]"):
        StreamWebSocketRoute("/ws", lambda websocket: None, origins=[origin])
    with pytest.raises(TypeError, match="list of origins"):
        StreamWebSocketRoute("/ws", lambda websocket: None, origins="https://a.b")


# -- bad input over a real server ------------------------------------------------------------


def _echo_app(after: queue.Queue[tuple[str, int, str]]) -> FastAPI:
    router = ConnectionRouter()

    async def record(websocket: WebSocket, name: str) -> None:
        if websocket.client_state is WebSocketState.DISCONNECTED:
            return  # the client closed: Starlette's receive_* raise RuntimeError from now on
        try:
            await websocket.receive_json()
        except WebSocketDisconnect as exc:
            after.put((name, exc.code, exc.reason))

    @router.websocket("/json")
    async def json_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket.iter_json():
            await websocket.send_json(message)
        await record(websocket, "json")

    @router.websocket("/msgpack")
    async def msgpack_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        async for message in websocket.iter_msgpack():
            await websocket.send_msgpack(message)
        await record(websocket, "msgpack")

    @router.websocket("/text")
    async def text_echo(websocket: WebSocket) -> None:  # lets WebSocketDisconnect escape
        await websocket.accept()
        while True:
            await websocket.send_text(await websocket.receive_text())

    @router.websocket("/bytes")
    async def bytes_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            await websocket.send_bytes(await websocket.receive_bytes())

    app = FastAPI()
    app.include_router(router)
    return app


@pytest.fixture(scope="module")
def echo_server() -> Iterator[tuple[Running, queue.Queue[tuple[str, int, str]]]]:
    after: queue.Queue[tuple[str, int, str]] = queue.Queue()
    with serve(_echo_app(after), log_config=None) as server:
        yield server, after


BAD_INPUT = [
    # path, a good frame, the bad frame, close code, reason fragment
    ("/json", '{"a": 1}', "x" * (LIMIT + 1), 1009, f"at most {LIMIT} bytes"),
    ("/json", '{"a": 1}', '"' + "€" * (LIMIT // 3) + '"', 1009, "at most"),  # > LIMIT in UTF-8
    ("/bytes", b"ok", b"\x00" * (LIMIT + 1), 1009, "at most"),
    ("/json", '{"a": 1}', "{not json", 1007, "invalid JSON"),
    ("/msgpack", msgspec.msgpack.encode([1]), b"\xc1", 1007, "MessagePack"),
    ("/json", '{"a": 1}', b'{"a": 1}', 1003, "expected a text frame, got a binary frame"),
    ("/msgpack", msgspec.msgpack.encode([1]), "text", 1003, "expected a binary frame"),
    ("/text", "hi", b"hi", 1003, "expected a text frame"),
    ("/bytes", b"hi", "hi", 1003, "expected a binary frame"),
]


@pytest.mark.parametrize(("path", "good", "bad", "code", "reason"), BAD_INPUT)
async def test_bad_input_closes_cleanly(
    echo_server: tuple[Running, queue.Queue[tuple[str, int, str]]],
    caplog: pytest.LogCaptureFixture,
    path: str,
    good: str | bytes,
    bad: str | bytes,
    code: int,
    reason: str,
) -> None:
    server, after = echo_server
    async with _connect(server, path) as client:
        await client.send(good)
        assert await client.recv() == (good if path != "/json" else '{"a":1}')
        await client.send(bad)
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == code
    assert reason in closed.value.rcvd.reason
    assert len(closed.value.rcvd.reason.encode()) <= 123
    if path in ("/json", "/msgpack"):  # iter_* stopped; a later receive_* raises the same close
        recorded = await anyio.to_thread.run_sync(lambda: after.get(timeout=5))
        assert recorded == (path[1:], code, closed.value.rcvd.reason)
        assert after.empty()
    await anyio.sleep(0.05)  # let the server finish the connection before reading the log
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_client_leaving_is_not_an_error(
    echo_server: tuple[Running, queue.Queue[tuple[str, int, str]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _ = echo_server
    for path, frame in (("/text", "x"), ("/bytes", b"x"), ("/json", "1")):
        async with _connect(server, path) as client:
            await client.send(frame)
            assert await client.recv() == frame
    await anyio.sleep(0.1)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- the extras: modes, serializers, MessagePack ---------------------------------------------


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents


def _extras_app() -> FastAPI:
    router = ConnectionRouter()

    @router.websocket("/extras")
    async def extras(websocket: WebSocket) -> None:
        await websocket.accept()
        assert await websocket.receive_data("text") == "t"
        assert await websocket.receive_data("binary") == b"b"
        await websocket.send_data(b"as text", mode="text")
        await websocket.send_data("as bytes", mode="binary")
        await websocket.send_json(
            {
                "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                "id": uuid.UUID(int=1),
                "price": decimal.Decimal("1.10"),
                "point": Point(1, 2),
                "profile": Profile(user="ann", since=dt.date(2024, 1, 1)),
            }
        )
        await websocket.send_json({"m": Money(250)}, serializer=lambda o: f"{o.cents / 100:.2f}")
        await websocket.send_json([1], mode="binary")
        payload = await websocket.receive_msgpack()
        await websocket.send_msgpack({"got": payload, "p": Point(3, 4)})
        texts = [item async for item in _take(websocket.iter_data("text"), 2)]
        await websocket.send_json(texts)
        await websocket.close()

    app = FastAPI()
    app.include_router(router)
    return app


async def _take(source: AsyncIterator[Any], count: int) -> AsyncIterator[Any]:
    async for item in source:
        yield item
        count -= 1
        if count == 0:
            return


async def test_websocket_extras_over_uvicorn() -> None:
    with serve(_extras_app()) as server:
        async with _connect(server, "/extras") as client:
            await client.send("t")
            await client.send(b"b")
            assert await client.recv() == "as text"
            assert await client.recv() == b"as bytes"
            assert json.loads(await client.recv()) == {
                "when": "2024-01-02T03:04:05Z",
                "id": "00000000-0000-0000-0000-000000000001",
                "price": "1.10",
                "point": {"x": 1, "y": 2},
                "profile": {"user": "ann", "since": "2024-01-01"},
            }
            assert json.loads(await client.recv()) == {"m": "2.50"}
            assert await client.recv() == b"[1]"
            await client.send(msgspec.msgpack.encode({"k": [1, 2]}))
            reply = msgspec.msgpack.decode(await client.recv())
            assert reply == {"got": {"k": [1, 2]}, "p": {"x": 3, "y": 4}}
            await client.send("one")
            await client.send("two")
            assert json.loads(await client.recv()) == ["one", "two"]


def test_max_message_size_none_disables_the_limit() -> None:
    class Unbounded(WebSocket):
        max_message_size = None

    async def app(scope: Any, receive: Any, send: Any) -> None:
        websocket = Unbounded(scope, receive, send)
        await websocket.accept()
        await websocket.send_text(str(len(await websocket.receive_text())))
        await websocket.close()

    with TestClient(app).websocket_connect("/") as client:
        client.send_text("x" * (LIMIT + 10))
        assert client.receive_text() == str(LIMIT + 10)


def test_receive_data_rejects_unknown_mode() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        websocket = WebSocket(scope, receive, send)
        await websocket.accept()
        with pytest.raises(UsageError, match='"text" or "binary"'):
            await websocket.receive_data("json")  # type: ignore[call-overload]
        with pytest.raises(UsageError):
            await websocket.send_data("x", mode="json")  # type: ignore[arg-type]
        await websocket.close()

    with TestClient(app).websocket_connect("/") as client:
        with pytest.raises(WebSocketDisconnect):
            client.receive_text()


def test_errors_in_endpoint_still_raise() -> None:
    router = ConnectionRouter()

    @router.websocket("/boom")
    async def boom(websocket: WebSocket) -> None:
        await websocket.accept()
        raise ValueError("boom")

    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client, pytest.raises(ValueError, match="boom"):
        with client.websocket_connect("/boom") as websocket:
            websocket.receive_text()


def _connect(server: Running, path: str, *, origin: str | None = None) -> Any:
    url = f"ws://127.0.0.1:{server.port}{path}"
    return connect(url, origin=origin, open_timeout=5, close_timeout=5, max_size=None)  # type: ignore[arg-type]


_ = ClientConnection  # the type `_connect` yields


def test_raw_receive_reports_an_oversized_message_as_a_1009_disconnect() -> None:
    seen: list[dict[str, Any]] = []

    class Small(WebSocket):
        max_message_size = 8

    async def app(scope: Any, receive: Any, send: Any) -> None:
        websocket = Small(scope, receive, send)
        await websocket.accept()
        seen.append(dict(await websocket.receive()))
        seen.append(dict(await websocket.receive()))
        with pytest.raises(WebSocketDisconnect) as again:
            await websocket.receive_bytes()
        seen.append({"again": again.value.code})

    with TestClient(app).websocket_connect("/") as client:
        client.send_bytes(b"12345678")
        client.send_text("€€€")  # 3 characters, 9 bytes in UTF-8
        with pytest.raises(WebSocketDisconnect) as closed:
            client.receive_text()
    assert closed.value.code == 1009
    reason = "expected a message of at most 8 bytes, got 9"
    assert seen == [
        {"type": "websocket.receive", "bytes": b"12345678"},
        {"type": "websocket.disconnect", "code": 1009, "reason": reason},
        {"again": 1009},
    ]
