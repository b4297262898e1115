"""`mount()` / `LifespanMount`: sub-app lifespans driven over ASGI, on FastAPI and Starlette hosts.

Every sub-app kind (FastAPI, Starlette, Litestar, FastStream's AsgiFastStream, raw ASGI) runs
the same recording lifespan: it logs ``<name>:start`` and, after its ``yield`` and without
try/finally, ``<name>:stop`` -- so ``:stop`` appears only on a real shutdown, never a cancel.
`LifespanServer` plays uvicorn's side of the lifespan protocol and logs what the host answers.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal

import anyio
import pytest
from fastapi import FastAPI
from fastapi import Request as FastAPIRequest
from fastapi import WebSocket as FastAPIWebSocket
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, Router, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from fastapi_streamkit import LifespanMount, mount
from fastapi_streamkit.exceptions import (
    LifespanShutdownError,
    LifespanStartupError,
    LifespanTimeoutError,
    StreamkitError,
)
from fastapi_streamkit.lifespan import AnyASGIApp, LifespanPhase

from ._redis import REDIS_URL, require_redis

Log = list[str]
Fail = Literal["startup", "shutdown", "hang-startup", "hang-shutdown"] | None
Lifespan = Callable[[object], AbstractAsyncContextManager[dict[str, Any]]]

KINDS = ["fastapi", "starlette", "litestar", "faststream", "raw"]
HOSTS = ["fastapi", "starlette"]
LIMIT = 10.0  # seconds: no test may wait longer for anything


def recorder(log: Log, name: str, fail: Fail = None) -> Lifespan:
    """A lifespan that logs start/stop; ``:stop`` is after the yield without try/finally."""

    @asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[dict[str, Any]]:
        log.append(f"{name}:start")
        if fail == "startup":
            raise RuntimeError(f"{name} cannot start")
        if fail == "hang-startup":
            await anyio.sleep_forever()
        yield {"owner": name, f"{name}_only": True}
        log.append(f"{name}:stop")
        if fail == "shutdown":
            raise RuntimeError(f"{name} cannot stop")
        if fail == "hang-shutdown":
            await anyio.sleep_forever()

    return lifespan


def state_of(scope: Scope) -> dict[str, Any]:
    return {k: v for k, v in scope.get("state", {}).items() if isinstance(v, str | bool)}


def fastapi_app(lifespan: Lifespan) -> ASGIApp:
    app = FastAPI(lifespan=lifespan)

    @app.get("/state", name="state")
    def state(request: FastAPIRequest) -> dict[str, Any]:
        return state_of(request.scope)

    @app.websocket("/ws")
    async def ws(websocket: FastAPIWebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(state_of(websocket.scope))
        await websocket.close()

    return app


def starlette_app(lifespan: Lifespan) -> ASGIApp:
    async def state(request: Request) -> JSONResponse:
        return JSONResponse(state_of(request.scope))

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(state_of(websocket.scope))
        await websocket.close()

    routes = [Route("/state", state, name="state"), WebSocketRoute("/ws", ws, name="ws")]
    return Starlette(routes=routes, lifespan=lifespan)


def litestar_app(lifespan: Lifespan, name: str) -> AnyASGIApp:
    from litestar import Litestar, get

    @get("/state", name="state")
    async def state() -> dict[str, str]:
        return {"owner": name}  # Litestar keeps lifespan state on app.state, not in the scope

    return Litestar(route_handlers=[state], lifespan=[lifespan])


def faststream_app(lifespan: Lifespan, name: str) -> ASGIApp:
    from faststream.asgi import AsgiFastStream
    from faststream.redis import RedisBroker

    # Without subscribers the broker does not connect: this checks the lifespan protocol only;
    # test_faststream_broker_really_runs_inside_the_host runs a connected broker.
    broker = RedisBroker(REDIS_URL)

    @asynccontextmanager
    async def faststream_lifespan() -> AsyncIterator[None]:
        async with lifespan(None):
            yield

    async def state(scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse({"owner": name})(scope, receive, send)

    return AsgiFastStream(broker, lifespan=faststream_lifespan, asgi_routes=[("/state", state)])


def raw_app(lifespan: Lifespan) -> ASGIApp:
    """A bare ASGI callable that speaks the lifespan protocol by hand."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await JSONResponse(state_of(scope))(scope, receive, send)
            return
        await receive()
        context = lifespan(app)
        try:
            scope["state"].update(await context.__aenter__())
        except Exception:
            await send({"type": "lifespan.startup.failed", "message": traceback.format_exc()})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        try:
            await context.__aexit__(None, None, None)
        except Exception:
            await send({"type": "lifespan.shutdown.failed", "message": traceback.format_exc()})
            return
        await send({"type": "lifespan.shutdown.complete"})

    return app


def make_sub(kind: str, log: Log, name: str, fail: Fail = None) -> AnyASGIApp:
    """A sub-app of ``kind`` running `recorder(log, name, fail)` as its lifespan."""
    lifespan = recorder(log, name, fail)
    if kind == "fastapi":
        return fastapi_app(lifespan)
    if kind == "starlette":
        return starlette_app(lifespan)
    if kind == "litestar":
        return litestar_app(lifespan, name)
    if kind == "faststream":
        return faststream_app(lifespan, name)
    assert kind == "raw"
    return raw_app(lifespan)


def make_host(kind: str, log: Log, fail: Fail = None) -> FastAPI | Starlette:
    lifespan = recorder(log, "host", fail)
    if kind == "fastapi":
        host: FastAPI | Starlette = FastAPI(lifespan=lifespan)
    else:
        host = Starlette(lifespan=lifespan)

    async def state(request: Request) -> JSONResponse:
        return JSONResponse(state_of(request.scope))

    async def link(request: Request) -> JSONResponse:
        return JSONResponse({"url": str(request.url_for(request.path_params["name"]))})

    host.add_route("/state", state)
    host.add_route("/link/{name}", link)
    return host


class LifespanServer:
    """The server's side of the ASGI lifespan protocol, calling ``app`` directly.

    Logs ``server<-<message type>`` for each answer, so the log interleaves with the apps'.
    """

    def __init__(self, app: ASGIApp, log: Log) -> None:
        self.app = app
        self.log = log
        self.state: dict[str, Any] = {}
        self.error: BaseException | None = None
        self._to_app, self._inbox = anyio.create_memory_object_stream[Message](2)
        self._outbox, self._replies = anyio.create_memory_object_stream[Message](4)
        self._done = anyio.Event()

    async def _run(self) -> None:
        async def send(message: Message) -> None:
            self.log.append(f"server<-{message['type']}")
            await self._outbox.send(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": self.state}
        try:
            await self.app(scope, self._inbox.receive, send)
        except Exception as exc:
            self.error = exc
        finally:
            self._done.set()

    async def _ask(self, event: str) -> Message:
        with anyio.fail_after(LIMIT):
            await self._to_app.send({"type": event})
            return await self._replies.receive()

    async def startup(self) -> Message:
        return await self._ask("lifespan.startup")

    async def shutdown(self) -> Message:
        return await self._ask("lifespan.shutdown")

    @asynccontextmanager
    async def running(self) -> AsyncIterator[LifespanServer]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._run)
            try:
                yield self
                with anyio.fail_after(LIMIT):
                    await self._done.wait()
            finally:
                for stream in (self._to_app, self._inbox, self._outbox, self._replies):
                    stream.close()


async def cycle(app: ASGIApp, log: Log) -> tuple[Message, Message | None, BaseException | None]:
    """One startup (+ shutdown when it started); returns both answers and the app's error."""
    async with LifespanServer(app, log).running() as server:
        started = await server.startup()
        stopped = None
        if started["type"] == "lifespan.startup.complete":
            stopped = await server.shutdown()
    return started, stopped, server.error


async def wait_for(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (for things that offer no event, like log records); callers bound it."""
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(0.01)


def started_and_stopped(*names: str) -> Log:
    return [
        *(f"{n}:start" for n in names),
        "server<-lifespan.startup.complete",
        *(f"{n}:stop" for n in reversed(names)),
        "server<-lifespan.shutdown.complete",
    ]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("host_kind", HOSTS)
async def test_order_over_two_cycles(host_kind: str, kind: str) -> None:
    log: Log = []
    host = make_host(host_kind, log)
    for name in "abc":
        mount(host, f"/{name}", make_sub(kind, log, name), name=name)
    for _ in range(2):
        started, stopped, error = await cycle(host, log)
        assert error is None
        assert log == started_and_stopped("host", "a", "b", "c")
        log.clear()


@pytest.mark.anyio
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("host_kind", HOSTS)
async def test_second_of_three_fails(host_kind: str, kind: str) -> None:
    log: Log = []
    host = make_host(host_kind, log)
    mount(host, "/a", make_sub(kind, log, "a"), name="a")
    mount(host, "/b", make_sub(kind, log, "b", fail="startup"), name="b")
    mount(host, "/c", make_sub(kind, log, "c"), name="c")
    started, stopped, error = await cycle(host, log)
    assert log == [
        "host:start",
        "a:start",
        "b:start",
        "a:stop",  # a real shutdown: the code after a's yield ran
        "host:stop",
        "server<-lifespan.startup.failed",
    ]
    assert isinstance(error, LifespanStartupError)
    assert error.label.startswith("sub-app 'b'")
    for text in (started["message"], str(error)):
        assert "mounted at '/b'" in text
        assert "RuntimeError: b cannot start" in text
        assert "Traceback" in text
    assert stopped is None


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["fastapi", "starlette", "litestar", "raw"])
@pytest.mark.parametrize("host_kind", HOSTS)
async def test_shutdown_errors_are_raised_together(host_kind: str, kind: str) -> None:
    log: Log = []
    host = make_host(host_kind, log)
    mount(host, "/a", make_sub(kind, log, "a", fail="shutdown"), name="a")
    mount(host, "/b", make_sub(kind, log, "b"), name="b")
    mount(host, "/c", make_sub(kind, log, "c", fail="shutdown"), name="c")
    started, stopped, error = await cycle(host, log)
    assert log[-5:] == [
        "c:stop",
        "b:stop",
        "a:stop",
        "host:stop",
        "server<-lifespan.shutdown.failed",
    ]
    assert isinstance(error, LifespanShutdownError)
    assert isinstance(error, ExceptionGroup)
    notes = [e.__notes__[-1] for e in error.exceptions]
    assert [
        (n.split("'")[1], n.endswith(f"mounted at '/{n.split(chr(39))[1]}'")) for n in notes
    ] == [
        ("c", True),
        ("a", True),
    ]
    assert stopped is not None
    assert "c cannot stop" in stopped["message"]
    assert "a cannot stop" in stopped["message"]


@pytest.mark.anyio
async def test_host_failure_at_shutdown_joins_the_sub_apps_errors() -> None:
    log: Log = []
    host = make_host("starlette", log, fail="shutdown")
    mount(host, "/a", make_sub("fastapi", log, "a", fail="shutdown"))
    started, stopped, error = await cycle(host, log)
    assert isinstance(error, LifespanShutdownError)
    sub_error, host_error = error.exceptions
    assert "mounted at '/a' sent lifespan.shutdown.failed" in str(sub_error)
    assert "RuntimeError: a cannot stop" in str(sub_error)
    assert repr(host_error) == "RuntimeError('host cannot stop')"
    assert log[-3:] == ["a:stop", "host:stop", "server<-lifespan.shutdown.failed"]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["fastapi", "starlette", "litestar", "raw"])
@pytest.mark.parametrize("phase", ["startup", "shutdown"])
async def test_timeouts_name_the_sub_app_and_path(phase: str, kind: str) -> None:
    log: Log = []
    host = make_host("fastapi", log)
    mount(host, "/a", make_sub("starlette", log, "a"))
    mount(
        host,
        "/slow",
        make_sub(kind, log, "slow", fail="hang-startup" if phase == "startup" else "hang-shutdown"),
        name="slow",
        startup_timeout=0.2,
        shutdown_timeout=0.2,
    )
    started, stopped, error = await cycle(host, log)
    reply = started if phase == "startup" else stopped
    assert reply is not None
    assert reply["type"] == f"lifespan.{phase}.failed"
    assert "sub-app 'slow'" in reply["message"]
    assert "mounted at '/slow'" in reply["message"]
    assert f"did not complete {phase} within 0.2 s" in reply["message"]
    assert log[-3:] == ["a:stop", "host:stop", f"server<-lifespan.{phase}.failed"]
    if phase == "startup":
        assert isinstance(error, LifespanStartupError)
        assert isinstance(error.__cause__, LifespanTimeoutError)
    else:
        assert isinstance(error, LifespanShutdownError)
        (timeout,) = error.exceptions
        assert isinstance(timeout, LifespanTimeoutError)
        assert isinstance(timeout, TimeoutError)
        assert "sub-app 'slow'" in str(timeout)


@pytest.mark.anyio
@pytest.mark.parametrize("host_kind", HOSTS)
async def test_state_reaches_only_its_own_sub_app(host_kind: str) -> None:
    log: Log = []
    host = make_host(host_kind, log)
    mount(host, "/a", make_sub("fastapi", log, "a"))
    mount(host, "/b", make_sub("starlette", log, "b"))
    mount(host, "/c", make_sub("raw", log, "c"))
    with TestClient(host) as client:
        assert client.get("/state").json() == {"owner": "host", "host_only": True}
        for name in "abc":
            got = client.get(f"/{name}/state").json()
            # the sub-app's own keys win; other sub-apps' keys never show up
            assert got == {"owner": name, "host_only": True, f"{name}_only": True}
        for name in "ab":
            with client.websocket_connect(f"/{name}/ws") as ws:
                assert ws.receive_json()["owner"] == name
        assert client.get("/state").json() == {"owner": "host", "host_only": True}


def test_requests_without_a_lifespan_still_reach_the_sub_app() -> None:
    log: Log = []
    host = make_host("fastapi", log)
    mount(host, "/a", make_sub("fastapi", log, "a"))
    route = mount(host, "/b", make_sub("raw", log, "b"))
    assert isinstance(route, LifespanMount)
    client = TestClient(host)  # not entered: no lifespan runs
    assert client.get("/b/state").json() == {}
    assert log == []
    assert route.phase is LifespanPhase.IDLE
    assert route.state is None


@pytest.mark.parametrize("host_kind", HOSTS)
def test_url_for_reaches_a_mounted_sub_apps_route(host_kind: str) -> None:
    log: Log = []
    host = make_host(host_kind, log)
    mount(host, "/a", make_sub("fastapi", log, "a"), name="a")
    mount(host, "/b", make_sub("starlette", log, "b"), name="b")
    assert host.url_path_for("a:state") == "/a/state"
    assert host.url_path_for("b:ws") == "/b/ws"
    with TestClient(host) as client:
        assert client.get("/link/a:state").json() == {"url": "http://testserver/a/state"}
        assert client.get("/link/b:state").json() == {"url": "http://testserver/b/state"}


def test_two_testclient_cycles_start_and_stop_each_part_once() -> None:
    log: Log = []
    host = make_host("fastapi", log)
    shared = make_sub("fastapi", log, "shared")
    mount(host, "/a", make_sub("starlette", log, "a"))
    mount(host, "/s1", shared)
    mount(host, "/s2", shared)  # the same app mounted twice runs its lifespan once
    for _ in range(2):
        with TestClient(host) as client:
            assert client.get("/s2/state").json()["owner"] == "shared"
        assert log == [
            "host:start",
            "a:start",
            "shared:start",
            "shared:stop",
            "a:stop",
            "host:stop",
        ]
        log.clear()


@pytest.mark.anyio
async def test_mount_on_a_plain_router() -> None:
    log: Log = []
    router = Router(lifespan=recorder(log, "host"))
    route = mount(router, "/a", make_sub("fastapi", log, "a"), name="a")
    assert router.routes == [route]
    assert router.url_path_for("a:state") == "/a/state"
    started, stopped, error = await cycle(router, log)
    assert log == started_and_stopped("host", "a")


@pytest.mark.anyio
async def test_fastapi_on_startup_handlers_still_run_before_sub_apps() -> None:
    log: Log = []
    host = FastAPI(on_startup=[lambda: log.append("on_startup")])
    host.router.on_shutdown.append(lambda: log.append("on_shutdown"))
    mount(host, "/a", make_sub("fastapi", log, "a"))
    await cycle(host, log)
    assert log == [
        "on_startup",
        "a:start",
        "server<-lifespan.startup.complete",
        "a:stop",
        "on_shutdown",
        "server<-lifespan.shutdown.complete",
    ]


async def _raises_on_scope(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        raise ValueError(f"unsupported scope type {scope['type']!r}")
    await JSONResponse({"plain": True})(scope, receive, send)


async def _returns_at_once(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "lifespan":
        await JSONResponse({"plain": True})(scope, receive, send)


async def _raises_on_startup(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        raise NotImplementedError("no lifespan here")
    await JSONResponse({"plain": True})(scope, receive, send)


async def _returns_on_startup(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        return
    await JSONResponse({"plain": True})(scope, receive, send)


@pytest.mark.parametrize(
    "plain", [_raises_on_scope, _returns_at_once, _raises_on_startup, _returns_on_startup]
)
def test_apps_without_lifespan_support_are_tolerated_and_logged_once(
    plain: ASGIApp, caplog: pytest.LogCaptureFixture
) -> None:
    log: Log = []
    host = make_host("starlette", log)
    mount(host, "/a", make_sub("fastapi", log, "a"))
    route = mount(host, "/plain", plain, name="plain")
    mount(host, "/c", make_sub("raw", log, "c"))
    caplog.set_level(logging.DEBUG, logger="fastapi_streamkit.lifespan")
    for _ in range(2):
        with TestClient(host) as client:
            assert client.get("/plain/x").json() == {"plain": True}
            assert isinstance(route, LifespanMount)
            assert route.phase is LifespanPhase.UNSUPPORTED
        assert log == ["host:start", "a:start", "c:start", "c:stop", "a:stop", "host:stop"]
        log.clear()
    records = [r for r in caplog.records if r.name == "fastapi_streamkit.lifespan"]
    assert len(records) == 1
    assert records[0].levelno == logging.DEBUG
    assert "does not support the ASGI lifespan protocol" in records[0].getMessage()
    assert "mounted at '/plain'" in records[0].getMessage()


async def _answers_wrongly(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "lifespan.shutdown.complete"})


@pytest.mark.anyio
async def test_a_protocol_violation_fails_startup_with_a_diagnosis() -> None:
    log: Log = []
    host = make_host("fastapi", log)
    mount(host, "/bad", _answers_wrongly)
    started, stopped, error = await cycle(host, log)
    assert started["type"] == "lifespan.startup.failed"
    assert (
        "sent 'lifespan.shutdown.complete' while the server awaited "
        "lifespan.startup.complete or lifespan.startup.failed" in started["message"]
    )
    assert log == ["host:start", "host:stop", "server<-lifespan.startup.failed"]


@pytest.mark.anyio
async def test_a_sub_app_whose_lifespan_dies_while_running_is_logged_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    died = anyio.Event()

    async def dies(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "lifespan.startup.complete"})
        died.set()
        await send({"type": "lifespan.shutdown.failed", "message": "broker connection lost"})

    log: Log = []
    host = make_host("starlette", log)
    mount(host, "/dies", dies, name="dies")
    async with LifespanServer(host, log).running() as server:
        assert (await server.startup())["type"] == "lifespan.startup.complete"
        with anyio.fail_after(LIMIT):
            await died.wait()
            await wait_for(lambda: bool(caplog.records))
        (record,) = caplog.records
        assert record.levelno == logging.ERROR
        assert "its lifespan ended while the app runs" in record.getMessage()
        assert "broker connection lost" in record.getMessage()
        assert (await server.shutdown())["type"] == "lifespan.shutdown.failed"
    assert isinstance(server.error, LifespanShutdownError)
    assert "broker connection lost" in str(server.error.exceptions[0])
    assert log[-2:] == ["host:stop", "server<-lifespan.shutdown.failed"]


def test_lifespan_errors_are_streamkit_errors() -> None:
    for cls in (LifespanShutdownError, LifespanStartupError, LifespanTimeoutError):
        assert issubclass(cls, StreamkitError)
    group = LifespanShutdownError("2 failed", [ValueError("x"), KeyError("y")])
    match, rest = group.split(ValueError)
    assert isinstance(match, LifespanShutdownError)
    assert isinstance(rest, LifespanShutdownError)


@pytest.mark.anyio
async def test_faststream_broker_really_runs_inside_the_host() -> None:
    from faststream.asgi import AsgiFastStream
    from faststream.redis import RedisBroker

    require_redis()
    log: Log = []
    got = anyio.Event()
    broker = RedisBroker(REDIS_URL)
    channel = f"streamkit-test:{uuid.uuid4().hex}"

    @broker.subscriber(channel)
    async def handle(body: str) -> None:
        log.append(f"got:{body}")
        got.set()

    app = AsgiFastStream(
        broker,
        on_startup=[lambda: log.append("on_startup")],
        after_startup=[lambda: log.append("after_startup")],
        on_shutdown=[lambda: log.append("on_shutdown")],
        after_shutdown=[lambda: log.append("after_shutdown")],
    )
    host = make_host("fastapi", log)
    mount(host, "/stream", app)
    async with LifespanServer(host, log).running() as server:
        assert (await server.startup())["type"] == "lifespan.startup.complete"
        with anyio.fail_after(LIMIT):
            while "got:hello" not in log:
                await broker.publish("hello", channel)
                with anyio.move_on_after(0.2):
                    await got.wait()
        await server.shutdown()
    assert server.error is None
    # AsgiFastStream answers startup.complete once its on_startup hooks ran, before its broker
    # started and its after_startup hooks ran: over ASGI, that answer is all a server can know.
    assert log[:3] == ["host:start", "on_startup", "server<-lifespan.startup.complete"]
    assert "after_startup" in log
    assert log[-4:] == [
        "on_shutdown",
        "after_shutdown",
        "host:stop",
        "server<-lifespan.shutdown.complete",
    ]


@pytest.mark.anyio
async def test_mount_on_an_api_router_included_twice_runs_once_per_cycle() -> None:
    from fastapi import APIRouter

    log: Log = []
    router = APIRouter()
    mount(router, "/a", make_sub("fastapi", log, "a"), name="a")
    host = make_host("fastapi", log)
    assert isinstance(host, FastAPI)
    host.include_router(router, prefix="/one")
    host.include_router(router, prefix="/two")
    for _ in range(2):
        async with LifespanServer(host, log).running() as server:
            assert (await server.startup())["type"] == "lifespan.startup.complete"
            assert log == ["host:start", "a:start", "server<-lifespan.startup.complete"]
            await server.shutdown()
        assert server.error is None
        assert log[-3:] == ["a:stop", "host:stop", "server<-lifespan.shutdown.complete"]
        log.clear()
    with TestClient(host) as client:  # FastAPI copies the Mount per include: state follows
        assert client.get("/one/a/state").json()["owner"] == "a"
        assert client.get("/two/a/state").json()["owner"] == "a"
