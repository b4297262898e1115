"""StreamRoute / StreamRouter streaming routes: HEAD on GET routes, typed generator endpoints
(validated and serialized through their item model), OpenAPI item schemas, and headers/cookies
set on an injected `Response` before the first item.

Every test runs through ``APIRouter(route_class=StreamRoute)`` and through `StreamRouter`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import anyio
import httpx
import msgspec
import pydantic
import pytest
from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, Response
from fastapi.sse import EventSourceResponse

from fastapi_streamkit import (
    EventStream,
    JSONLines,
    MsgPackStream,
    Stream,
    StreamRoute,
    StreamRouter,
)
from tests._server import serve
from tests.apps.wire import ASGICall, RawClient

RouterFactory = Callable[[], APIRouter]
ROUTERS: dict[str, RouterFactory] = {
    "StreamRoute": lambda: APIRouter(route_class=StreamRoute),
    "StreamRouter": lambda: StreamRouter(),
}


@pytest.fixture(params=list(ROUTERS))
def make_router(request: pytest.FixtureRequest) -> RouterFactory:
    return ROUTERS[request.param]


class Item(pydantic.BaseModel):
    name: str
    price: float


class SecretItem(Item):
    secret: str  # a subclass field: must not leak through an Item stream


def _app(router: APIRouter, prefix: str = "") -> FastAPI:
    app = FastAPI()
    app.include_router(router, prefix=prefix)
    return app


async def _get(app: FastAPI, path: str, method: str = "GET", **kwargs: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with anyio.fail_after(5):
            return await client.request(method, path, **kwargs)


# -- HEAD -------------------------------------------------------------------------------------


def _head_router(router: APIRouter, started: list[str]) -> APIRouter:
    @router.get("/typed", response_class=EventStream)
    async def typed() -> AsyncIterator[Item]:
        started.append("typed")
        yield Item(name="a", price=1)

    @router.get("/returned")
    async def returned() -> Stream:
        def content() -> Iterator[str]:
            started.append("returned")
            yield "body"

        return Stream(content, media_type="text/plain", headers={"x-kind": "returned"})

    @router.get("/json")
    async def json_endpoint() -> dict[str, int]:
        return {"a": 1}

    @router.post("/post-only")
    async def post_only() -> dict[str, int]:
        return {"a": 1}

    return router


@pytest.mark.anyio
async def test_head_on_streaming_get_routes(make_router: RouterFactory) -> None:
    started: list[str] = []
    app = _app(_head_router(make_router(), started), prefix="/api")
    typed = await _get(app, "/api/typed", "HEAD")
    assert typed.status_code == 200 and typed.content == b""
    assert typed.headers["content-type"].startswith("text/event-stream")
    returned = await _get(app, "/api/returned", "HEAD")
    assert returned.status_code == 200 and returned.content == b""
    assert returned.headers["x-kind"] == "returned"
    assert started == []  # neither generator nor callable content ever started
    # ...and GET still streams.
    assert (await _get(app, "/api/typed")).text == 'data: {"name":"a","price":1.0}\n\n'
    assert (await _get(app, "/api/returned")).text == "body"
    assert started == ["typed", "returned"]


@pytest.mark.anyio
async def test_head_on_other_routes(make_router: RouterFactory) -> None:
    app = _app(_head_router(make_router(), []))
    json_head = await _get(app, "/json", "HEAD")
    assert json_head.status_code == 200 and json_head.content == b""
    assert json_head.headers["content-length"] == "7"  # as GET's body, as Starlette's Route
    assert (await _get(app, "/post-only", "HEAD")).status_code == 405


@pytest.mark.anyio
async def test_plain_apirouter_refuses_head() -> None:
    """The behaviour StreamRoute fixes: FastAPI's APIRoute answers HEAD with 405."""
    app = _app(_head_router(APIRouter(), []))
    assert (await _get(app, "/returned", "HEAD")).status_code == 405


def test_openapi_lists_no_head_operation(make_router: RouterFactory) -> None:
    schema = _app(_head_router(make_router(), [])).openapi()
    assert set(schema["paths"]["/typed"]) == {"get"}
    assert set(schema["paths"]["/returned"]) == {"get"}


def test_head_over_uvicorn_sends_no_body(make_router: RouterFactory) -> None:
    started: list[str] = []
    with serve(_app(_head_router(make_router(), started))) as running:
        client = RawClient(running.port, "/typed", method="HEAD")
        try:
            status, headers = client.read_head()
            client.sock.settimeout(0.3)
            with pytest.raises(TimeoutError):  # nothing after the head, connection kept alive
                client.sock.recv(1)
        finally:
            client.close()
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert started == [] and client.buffer == b""


# -- typed streams ----------------------------------------------------------------------------


def tax(rate: float = 0.0) -> float:
    return rate


def _typed_router(router: APIRouter, response_class: type[Stream]) -> APIRouter:
    @router.get("/items/{prefix}", response_class=response_class)
    async def items(prefix: str, rate: Annotated[float, Depends(tax)]) -> AsyncIterator[Item]:
        yield Item(name=f"{prefix}-plain", price=1 + rate)
        yield {"name": f"{prefix}-dict", "price": "2.5"}  # type: ignore[misc]  # coerced
        yield SecretItem(name=f"{prefix}-sub", price=3, secret="hidden")

    @router.get("/sync-items", response_class=response_class)
    def sync_items() -> Iterator[Item]:
        yield Item(name="sync", price=1)
        yield SecretItem(name="sync-sub", price=2, secret="hidden")

    @router.get("/invalid", response_class=response_class)
    async def invalid() -> AsyncIterator[Item]:
        yield Item(name="ok", price=1)
        await anyio.sleep(0.05)  # the valid item reaches the client first
        yield {"name": "bad", "price": "not a number"}  # type: ignore[misc]
        yield Item(name="never", price=0)

    return router


def _decode(response_class: type[Stream], body: bytes) -> list[Any]:
    if response_class is EventStream:
        events = [e for e in body.split(b"\n\n") if e]
        assert all(e.startswith(b"data: ") and b"\n" not in e for e in events), body
        return [msgspec.json.decode(e[6:]) for e in events]
    if response_class is JSONLines:
        assert body.endswith(b"\n")
        return [msgspec.json.decode(line) for line in body.splitlines()]
    # Concatenated MessagePack objects, read as one array (no trailing bytes allowed).
    count = 0
    decoder = msgspec.msgpack.Decoder()
    while True:  # find how many objects: the smallest count that decodes the whole body
        count += 1
        try:
            return list(decoder.decode(b"\xdd" + count.to_bytes(4, "big") + body))
        except msgspec.DecodeError:
            assert count < 100, body


STREAM_CLASSES = [EventStream, JSONLines, MsgPackStream]
MEDIA_TYPES = {
    EventStream: "text/event-stream",
    JSONLines: "application/jsonl",
    MsgPackStream: "application/vnd.msgpack",
}


@pytest.mark.anyio
@pytest.mark.parametrize("response_class", STREAM_CLASSES, ids=lambda c: c.__name__)
async def test_typed_items_are_validated_and_serialized_through_the_model(
    make_router: RouterFactory, response_class: type[Stream]
) -> None:
    app = _app(_typed_router(make_router(), response_class))
    response = await _get(app, "/items/p?rate=0.5")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == MEDIA_TYPES[response_class]
    assert _decode(response_class, response.content) == [
        {"name": "p-plain", "price": 1.5},
        {"name": "p-dict", "price": 2.5},
        {"name": "p-sub", "price": 3.0},  # a subclass is serialized as Item: no "secret"
    ]
    sync = await _get(app, "/sync-items")
    assert _decode(response_class, sync.content) == [
        {"name": "sync", "price": 1.0},
        {"name": "sync-sub", "price": 2.0},
    ]
    assert b"hidden" not in response.content + sync.content


@pytest.mark.anyio
@pytest.mark.parametrize("response_class", STREAM_CLASSES, ids=lambda c: c.__name__)
async def test_invalid_item_aborts_the_stream_in_process(
    make_router: RouterFactory, response_class: type[Stream]
) -> None:
    app = _app(_typed_router(make_router(), response_class))
    call = ASGICall(path="/invalid")
    with anyio.fail_after(5), pytest.raises(pydantic.ValidationError):
        await app(call.scope, call.receive, call.send)
    assert len(call.starts) == 1 and call.starts[0]["status"] == 200
    assert _decode(response_class, call.body) == [{"name": "ok", "price": 1.0}]
    assert not call.ended


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("response_class", STREAM_CLASSES, ids=lambda c: c.__name__)
def test_invalid_item_aborts_the_transfer_over_uvicorn(
    make_router: RouterFactory, response_class: type[Stream]
) -> None:
    collect = Collect()
    with serve(_app(_typed_router(make_router(), response_class))) as running:
        logging.getLogger("uvicorn.error").addHandler(collect)
        logging.getLogger().addHandler(collect)
        try:
            client = RawClient(running.port, "/invalid")
            assert client.read_head()[0] == 200
            body, terminated = client.read_to_end()
            client.close()
        finally:
            logging.getLogger("uvicorn.error").removeHandler(collect)
            logging.getLogger().removeHandler(collect)
    assert not terminated  # truncated: never a clean end
    assert _decode(response_class, body) == [{"name": "ok", "price": 1.0}]
    errors = [r for r in collect.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], pydantic.ValidationError)


# -- OpenAPI ----------------------------------------------------------------------------------


def _fastapi_sse_item_schema() -> dict[str, Any]:
    """What FastAPI documents for its own typed SSE endpoint: ours must match it."""
    app = FastAPI()

    @app.get("/items", response_class=EventSourceResponse)
    async def items() -> AsyncIterator[Item]:
        yield Item(name="a", price=1)  # pragma: no cover

    content = app.openapi()["paths"]["/items"]["get"]["responses"]["200"]["content"]
    return dict(content["text/event-stream"]["itemSchema"])


@pytest.mark.parametrize("response_class", STREAM_CLASSES, ids=lambda c: c.__name__)
def test_openapi_documents_the_item_schema(
    make_router: RouterFactory, response_class: type[Stream]
) -> None:
    schema = _app(_typed_router(make_router(), response_class)).openapi()
    operation = schema["paths"]["/items/{prefix}"]["get"]
    content = operation["responses"]["200"]["content"]
    item_schema = content[MEDIA_TYPES[response_class]]["itemSchema"]
    ref = {"$ref": "#/components/schemas/Item"}
    if response_class is EventStream:
        assert item_schema == _fastapi_sse_item_schema()
        assert item_schema["properties"]["data"]["contentSchema"] == ref
    else:
        assert item_schema == ref
    item = schema["components"]["schemas"]["Item"]
    assert set(item["properties"]) == {"name", "price"} and set(item["required"]) == {
        "name",
        "price",
    }
    assert "SecretItem" not in schema["components"]["schemas"]
    assert {p["name"] for p in operation["parameters"]} == {"prefix", "rate"}
    assert "streamkit" not in str(operation)  # no internal parameter leaks into the docs


# -- headers and cookies set on an injected Response -----------------------------------------


def session(response: Response) -> str:
    response.headers["x-from-dependency"] = "dep"
    response.set_cookie("dep_cookie", "d1")
    return "s"


def _cookie_router(router: APIRouter) -> APIRouter:
    @router.get("/cookies", response_class=EventStream)
    async def cookies(
        response: Response, sid: Annotated[str, Depends(session)]
    ) -> AsyncIterator[Item]:
        response.headers["x-from-generator"] = "gen"
        response.set_cookie("gen_cookie", "g1", httponly=True)
        yield Item(name=sid, price=1)
        response.headers["x-too-late"] = "late"  # the head is gone: cannot be sent
        yield Item(name="second", price=2)

    @router.get("/cookies-jsonl", response_class=JSONLines)
    def cookies_sync(response: Response) -> Iterator[Item]:
        response.set_cookie("sync_cookie", "s1")
        yield Item(name="sync", price=1)

    return router


def test_injected_response_headers_and_cookies_reach_the_client(
    make_router: RouterFactory,
) -> None:
    with serve(_app(_cookie_router(make_router()))) as running:
        with httpx.Client(base_url=running.url, timeout=5) as client:
            response = client.get("/cookies")
            sync = client.get("/cookies-jsonl")
    assert response.status_code == 200
    assert response.headers["x-from-dependency"] == "dep"
    assert response.headers["x-from-generator"] == "gen"
    assert "x-too-late" not in response.headers
    assert response.cookies["dep_cookie"] == "d1"
    assert response.cookies["gen_cookie"] == "g1"
    assert any(
        "gen_cookie=g1" in c and "HttpOnly" in c for c in response.headers.get_list("set-cookie")
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.count("data: ") == 2
    assert sync.cookies["sync_cookie"] == "s1" and sync.json() == {"name": "sync", "price": 1.0}


def test_disconnect_before_the_first_item_closes_the_generator(
    make_router: RouterFactory,
) -> None:
    """The head waits for the first item; a client that leaves meanwhile still gets the
    generator closed (its ``finally`` runs)."""
    router = make_router()
    events: list[str] = []

    @router.get("/slow-start", response_class=EventStream)
    async def slow_start() -> AsyncIterator[Item]:
        events.append("started")
        try:
            await anyio.sleep_forever()
            yield Item(name="never", price=0)
        finally:
            events.append("finally")

    with serve(_app(router)) as running:
        client = RawClient(running.port, "/slow-start")
        try:
            deadline = time.monotonic() + 5
            while events != ["started"]:
                assert time.monotonic() < deadline, "the generator never started"
                time.sleep(0.005)
        finally:
            client.close()
        deadline = time.monotonic() + 5
        while events != ["started", "finally"]:
            assert time.monotonic() < deadline, f"the generator was not closed: {events}"
            time.sleep(0.005)


@pytest.mark.anyio
async def test_background_tasks_dependency_runs_once_after_the_stream(
    make_router: RouterFactory,
) -> None:
    router = make_router()
    runs: list[str] = []

    @router.get("/with-background")
    async def with_background(tasks: BackgroundTasks) -> Stream:
        tasks.add_task(runs.append, "after")
        return Stream(iter(["a", "b"]))

    response = await _get(_app(router), "/with-background")
    assert response.text == "ab" and runs == ["after"]


@pytest.mark.anyio
async def test_head_carries_headers_set_by_dependencies(make_router: RouterFactory) -> None:
    """HEAD runs the dependencies (their headers and cookies are sent) but never the
    generator, so what the generator would set is absent."""
    app = _app(_cookie_router(make_router()))
    response = await _get(app, "/cookies", "HEAD")
    assert response.status_code == 200 and response.content == b""
    assert response.headers["x-from-dependency"] == "dep"
    assert response.cookies["dep_cookie"] == "d1"
    assert "x-from-generator" not in response.headers and "gen_cookie" not in response.cookies
