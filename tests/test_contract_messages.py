"""Black-box contract tests: DESIGN.md "Messages", "Brokers" (MemoryBroker, Broker protocol)
and the ``worker`` command, sentence by sentence, through public names only.

Written as an outside acceptance suite would: no private helpers of the package, real FastAPI
apps, lifespans driven over ASGI (or by TestClient), every wait bounded.
"""

import dataclasses
import inspect
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.lowlevel
import pytest
from anyio.from_thread import BlockingPortal
from anyio.streams.memory import MemoryObjectSendStream
from fastapi import APIRouter, Depends, FastAPI, Header
from fastapi import Path as PathParam
from fastapi.dependencies.utils import get_dependant
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRouter as FastAPIRouter
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.requests import Request as StarletteRequest
from starlette.websockets import WebSocket as StarletteWebSocket
from websockets.sync.client import connect as ws_connect

from fastapi_streamkit import MemoryBroker, StreamMessage, StreamRouter, WebSocket
from fastapi_streamkit.brokers import Broker, Message
from tests._asgi import running as lifespan_of
from tests._asgi import take
from tests._server import serve

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]


class Order(BaseModel):
    id: int
    qty: int = 1


@dataclasses.dataclass
class Point:
    x: int
    y: int


# -- helpers ------------------------------------------------------------------------------
def portal(client: TestClient) -> BlockingPortal:
    """The running TestClient's portal (to call async code from a sync test)."""
    assert client.portal is not None, "enter the TestClient first"
    return client.portal


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - polling what handlers did, bounded
            await anyio.sleep(0.005)


async def nothing_more(messages: AsyncIterator[Message], within: float = 0.15) -> None:
    with anyio.move_on_after(within):
        extra = await anext(messages)
        raise AssertionError(f"expected no further message, got {extra!r}")


def app_with(*routers: APIRouter, **kwargs: Any) -> FastAPI:
    app = FastAPI(**kwargs)
    for router in routers:
        app.include_router(router)
    return app


class RecordingBroker:
    """A `Broker` that delegates to a `MemoryBroker` and records what the router asks of it."""

    def __init__(self, events: list[str] | None = None, **options: Any) -> None:
        self.inner = MemoryBroker(**options)
        self.events = events if events is not None else []
        self.subscriptions: list[tuple[str, str | None]] = []
        self.acked: list[str] = []

    async def start(self) -> None:
        self.events.append("broker start")
        await self.inner.start()

    async def close(self) -> None:
        self.events.append("broker close")
        await self.inner.close()

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def publish(
        self, topic: str, body: bytes, *, headers: dict[str, str] | None = None
    ) -> str:
        return await self.inner.publish(topic, body, headers=headers)

    def subscribe(
        self, topic: str, *, group: str | None = None, last_id: str | None = None
    ) -> AsyncIterator[Message]:
        self.subscriptions.append((topic, group))
        return self.inner.subscribe(topic, group=group, last_id=last_id)

    async def ack(self, message: Message) -> None:
        self.acked.append(message.id)
        await self.inner.ack(message)


# == StreamMessage ========================================================================


def test_stream_message_signature_is_the_contract() -> None:
    params = inspect.signature(StreamMessage).parameters
    assert list(params) == ["body", "headers", "path", "topic"]
    assert params["headers"].default is None
    assert params["path"].default is None
    assert params["topic"].default is None
    assert params["topic"].kind is inspect.Parameter.KEYWORD_ONLY
    for name in ("body", "headers", "path"):
        assert params[name].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    with pytest.raises(TypeError):
        StreamMessage(b"", None, None, "orders")  # type: ignore[call-arg]


async def test_stream_message_is_a_request_with_case_insensitive_headers() -> None:
    message = StreamMessage(
        b'{"id": 1}',
        {"X-Trace-ID": "abc", "Content-Type": "application/json"},
        {"region": "eu"},
        topic="orders.eu",
    )
    assert isinstance(message, StarletteRequest)
    assert message.headers["x-trace-id"] == "abc"
    assert message.headers["X-TRACE-ID"] == "abc"
    assert message.headers.get("x-Trace-Id") == "abc"
    assert "X-Trace-Id" in message.headers
    assert "x-missing" not in message.headers
    assert message.path_params == {"region": "eu"}
    assert isinstance(message.method, str) and message.method
    assert message.url.path.endswith("orders.eu")
    assert str(message.url)  # a URL can be rendered
    assert message.scope["type"] == "http"
    assert await message.body() == b'{"id": 1}'
    assert await message.json() == {"id": 1}
    assert await message.body() == b'{"id": 1}'  # reading twice works, as on a Request


async def test_stream_message_keywords_and_defaults() -> None:
    message = StreamMessage(body=b"raw", headers={"a": "1"}, path={"p": "v"}, topic="t")
    assert message.headers["A"] == "1"
    assert message.path_params == {"p": "v"}
    assert await message.body() == b"raw"
    bare = StreamMessage(b"x")
    assert dict(bare.headers) == {}
    assert bare.path_params == {}
    assert await bare.body() == b"x"


async def test_stream_message_non_ascii_header_round_trips() -> None:
    message = StreamMessage(b"", {"X-Name": "Zoë ☃"})
    assert message.headers["x-name"] == "Zoë ☃"


async def test_stream_message_stream_yields_the_body() -> None:
    message = StreamMessage(b"chunked body")
    chunks = [chunk async for chunk in message.stream()]
    assert b"".join(chunks) == b"chunked body"


# == get_session ==========================================================================


def session_for(handler: Callable[..., Any], provider: Any = None, path: str = "t") -> Any:
    dependant = get_dependant(path=path, call=handler, scope="function")
    return StreamMessage.get_session(dependant, lambda: provider)


async def test_get_session_runs_a_handler_with_body_header_and_path() -> None:
    async def handler(
        order: Order,
        region: Annotated[str, PathParam()],
        x_tenant: Annotated[str, Header()],
    ) -> dict[str, Any]:
        return {"order": order.model_dump(), "region": region, "tenant": x_tenant}

    session = session_for(handler, path="orders.{region}")
    message = StreamMessage(b'{"id": 3}', {"X-Tenant": "acme"}, {"region": "eu"}, topic="orders.eu")
    assert await session(message) == {
        "order": {"id": 3, "qty": 1},
        "region": "eu",
        "tenant": "acme",
    }


async def test_get_session_caches_sub_dependencies_per_message() -> None:
    calls: list[str] = []

    def base() -> int:
        calls.append("base")
        return len(calls)

    def left(value: Annotated[int, Depends(base)]) -> int:
        return value

    def right(value: Annotated[int, Depends(base)]) -> int:
        return value

    def fresh() -> str:
        calls.append("fresh")
        return "fresh"

    async def handler(
        a: Annotated[int, Depends(left)],
        b: Annotated[int, Depends(right)],
        c: Annotated[int, Depends(base)],
        d: Annotated[str, Depends(fresh, use_cache=False)],
        e: Annotated[str, Depends(fresh, use_cache=False)],
    ) -> tuple[int, int, int]:
        return a, b, c

    session = session_for(handler)
    first = await session(StreamMessage(b""))
    assert first[0] == first[1] == first[2]
    assert calls.count("base") == 1
    assert calls.count("fresh") == 2
    await session(StreamMessage(b""))  # a new message: a new cache
    assert calls.count("base") == 2


async def test_get_session_yield_teardown_runs_and_sees_the_handlers_error() -> None:
    events: list[str] = []

    async def resource() -> AsyncIterator[str]:
        events.append("open")
        try:
            yield "res"
        except ValueError as exc:
            events.append(f"saw {exc}")
            raise
        finally:
            events.append("close")

    def sync_resource() -> Iterator[str]:
        events.append("sync open")
        yield "sync"
        events.append("sync close")

    async def ok(
        r: Annotated[str, Depends(resource)], s: Annotated[str, Depends(sync_resource)]
    ) -> str:
        events.append("handler")
        return r + s

    assert await session_for(ok)(StreamMessage(b"")) == "ressync"
    assert events[0:2] == ["open", "sync open"] or events[0:2] == ["sync open", "open"]
    assert events[2] == "handler"
    assert sorted(events[3:]) == ["close", "sync close"]  # teardown done when the call returns

    events.clear()

    async def failing(r: Annotated[str, Depends(resource)]) -> str:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await session_for(failing)(StreamMessage(b""))
    assert events == ["open", "saw boom", "close"]


class Item(BaseModel):
    name: str
    price: float


async def handler_for_parity(
    item: Item,
    region: str,
    x_count: Annotated[int, Header()],
) -> dict[str, Any]:
    return {"item": item.model_dump(), "region": region, "count": x_count}


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b'{"name": "pen", "price": "cheap"}', {"x-count": "2"}),
        (b'{"price": 1}', {"x-count": "two"}),
        (b"", {}),
        (b"[1, 2]", {"x-count": "1"}),
        (b'{"name": "pen", "price": 1', {"x-count": "1"}),
    ],
    ids=["bad-field", "missing-field-and-bad-header", "empty", "wrong-type", "invalid-json"],
)
async def test_validation_errors_are_fastapis_own(body: bytes, headers: dict[str, str]) -> None:
    app = FastAPI()
    app.post("/orders/{region}")(handler_for_parity)
    with TestClient(app) as client:
        response = client.post(
            "/orders/eu",
            content=body,
            headers={**headers, "content-type": "application/json"},
        )
    assert response.status_code == 422
    expected = response.json()["detail"]

    session = session_for(handler_for_parity, path="orders.{region}")
    message = StreamMessage(
        body, {**headers, "content-type": "application/json"}, {"region": "eu"}, topic="o"
    )
    with pytest.raises(RequestValidationError) as caught:
        await session(message)
    assert jsonable_encoder(caught.value.errors()) == expected


async def test_overrides_are_looked_up_at_call_time() -> None:
    def real() -> str:
        return "real"

    async def handler(value: Annotated[str, Depends(real)]) -> str:
        return value

    class Provider:
        def __init__(self) -> None:
            self.dependency_overrides: dict[Any, Any] = {}

    first, second = Provider(), Provider()
    current = [first]
    session = StreamMessage.get_session(
        get_dependant(path="t", call=handler, scope="function"), lambda: current[0]
    )
    assert await session(StreamMessage(b"")) == "real"
    first.dependency_overrides[real] = lambda: "mocked"  # set after the session was built
    assert await session(StreamMessage(b"")) == "mocked"
    current[0] = second  # the factory itself is called per message
    assert await session(StreamMessage(b"")) == "real"
    second.dependency_overrides[real] = lambda: "second"
    assert await session(StreamMessage(b"")) == "second"
    second.dependency_overrides.clear()
    assert await session(StreamMessage(b"")) == "real"


async def test_a_yield_override_is_torn_down() -> None:
    events: list[str] = []

    def real() -> str:
        return "real"

    async def fake() -> AsyncIterator[str]:
        events.append("fake open")
        yield "fake"
        events.append("fake close")

    async def handler(value: Annotated[str, Depends(real)]) -> str:
        return value

    app = FastAPI()
    session = session_for(handler, provider=app)
    app.dependency_overrides[real] = fake
    assert await session(StreamMessage(b"")) == "fake"
    assert events == ["fake open", "fake close"]


async def test_handler_receives_the_stream_message_itself() -> None:
    async def handler(request: StreamMessage) -> tuple[str, bytes, str | None]:
        return request.headers["X-A"], await request.body(), request.path_params.get("r")

    session = session_for(handler, path="a.{r}")
    result = await session(StreamMessage(b"raw", {"x-a": "1"}, {"r": "v"}, topic="a.v"))
    assert result == ("1", b"raw", "v")


# == StreamRouter: construction ===========================================================


def test_stream_router_signature_and_default_broker() -> None:
    params = inspect.signature(StreamRouter).parameters
    expected = {
        "broker": None,
        "group": None,
        "asyncapi_path": None,
        "health_path": None,
        "websocket_origins": None,
        "drain_timeout": 10.0,
    }
    for name, default in expected.items():
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert params[name].default == default, name
    one, two = StreamRouter(), StreamRouter()
    assert isinstance(one, FastAPIRouter)
    assert isinstance(one.broker, MemoryBroker)
    assert one.broker is not two.broker  # a fresh one each
    mine = MemoryBroker()
    assert StreamRouter(broker=mine).broker is mine
    tagged = StreamRouter(prefix="/api", tags=["x"])  # APIRouter kwargs pass through
    assert tagged.prefix == "/api"
    assert tagged.tags == ["x"]


def test_decorator_signatures() -> None:
    router = StreamRouter()
    sub = inspect.signature(router.subscriber).parameters
    assert list(sub) == ["topic", "group", "broadcast", "max_retries"]
    assert sub["group"].default is None and sub["group"].kind is inspect.Parameter.KEYWORD_ONLY
    assert sub["broadcast"].default is False
    assert sub["max_retries"].default == 3
    pub = inspect.signature(router.publish).parameters
    assert list(pub) == ["topic", "body", "headers"]
    assert pub["headers"].kind is inspect.Parameter.KEYWORD_ONLY
    mount = inspect.signature(router.mount).parameters
    assert list(mount) == ["path", "app", "name", "startup_timeout", "shutdown_timeout"]
    assert mount["name"].default is None
    assert mount["name"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    for name in ("startup_timeout", "shutdown_timeout"):
        assert mount[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert mount[name].default is None


def test_subscriber_decorator_returns_the_handler() -> None:
    router = StreamRouter()

    async def handler(order: Order) -> Order:
        return order

    assert router.subscriber("orders")(handler) is handler
    assert router.publisher("done")(handler) is handler


# == StreamRouter: lifespan wiring ========================================================


def test_consumers_run_before_startup_completes_under_testclient() -> None:
    router = StreamRouter()
    got: list[Order] = []

    @router.subscriber("orders")
    async def handle(order: Order) -> None:
        got.append(order)

    app = app_with(router)
    with TestClient(app) as client:
        # no sleep: the consumer subscribed before lifespan.startup.complete went out
        message_id = portal(client).call(router.publish, "orders", {"id": 1})
        assert isinstance(message_id, str) and message_id
        portal(client).call(until, lambda: len(got) == 1)
    assert got == [Order(id=1)]


def counting_router(events: list[str]) -> tuple[StreamRouter, list[Order]]:
    router = StreamRouter(broker=RecordingBroker(events))
    got: list[Order] = []

    @router.before_startup
    def before() -> None:
        events.append("before_startup")

    @router.after_shutdown
    async def after() -> None:
        events.append("after_shutdown")

    @router.subscriber("orders")
    async def handle(order: Order) -> None:
        got.append(order)

    return router, got


@pytest.mark.parametrize(
    "layout", ["twice", "nested-api-router", "nested-stream-router", "both", "diamond"]
)
def test_router_lifespan_runs_once_per_cycle_over_two_cycles(layout: str) -> None:
    events: list[str] = []
    router, got = counting_router(events)
    app = FastAPI()
    if layout == "twice":
        app.include_router(router)
        app.include_router(router, prefix="/again")
    elif layout == "nested-api-router":
        outer = APIRouter()
        outer.include_router(router)
        app.include_router(outer, prefix="/outer")
    elif layout == "nested-stream-router":
        outer_stream = StreamRouter()
        outer_stream.include_router(router)
        app.include_router(outer_stream)
    elif layout == "both":
        outer = APIRouter()
        outer.include_router(router)
        app.include_router(outer)
        app.include_router(router)
    else:  # one router reached through two parents, one of them a StreamRouter included twice
        left, right = APIRouter(), StreamRouter()
        left.include_router(router)
        right.include_router(router)
        app.include_router(left, prefix="/left")
        app.include_router(right, prefix="/right")
        app.include_router(right, prefix="/right2")
    for cycle in (1, 2):
        with TestClient(app) as client:
            portal(client).call(router.publish, "orders", {"id": cycle})
            portal(client).call(until, lambda c=cycle: len(got) == c)
            assert portal(client).call(router.broker.ping)
        once = ["before_startup", "broker start", "broker close", "after_shutdown"]
        assert events == once * cycle, layout
    assert [order.id for order in got] == [1, 2]  # each handled once, by one consumer
    broker = router.broker
    assert isinstance(broker, RecordingBroker)
    assert len(broker.subscriptions) == 2  # one subscription per cycle


# == subscribers: groups and broadcast ====================================================


async def group_handler(order: Order) -> None:
    """A module-level handler: its qualified name is ``<module>.group_handler``."""


def test_group_default_router_group_and_explicit_group() -> None:
    async def run(router: StreamRouter) -> list[tuple[str, str | None]]:
        async with lifespan_of(app_with(router)):
            pass
        broker = router.broker
        assert isinstance(broker, RecordingBroker)
        return broker.subscriptions

    plain = StreamRouter(broker=RecordingBroker())
    plain.subscriber("a")(group_handler)
    plain.subscriber("b", group="billing")(group_handler)
    plain.subscriber("c", broadcast=True)(group_handler)
    subs = anyio.run(run, plain)
    assert subs[1:] == [("b", "billing"), ("c", None)]
    default_group = subs[0][1]
    assert default_group is not None
    assert default_group.endswith("group_handler")  # the handler's qualified name
    assert group_handler.__qualname__ in default_group

    grouped = StreamRouter(broker=RecordingBroker(), group="shop")
    grouped.subscriber("a")(group_handler)
    grouped.subscriber("b", group="billing")(group_handler)
    grouped.subscriber("c", broadcast=True)(group_handler)
    assert anyio.run(run, grouped) == [("a", "shop"), ("b", "billing"), ("c", None)]


def test_two_handlers_with_different_qualnames_get_different_default_groups() -> None:
    router = StreamRouter(broker=RecordingBroker())

    @router.subscriber("orders")
    async def first(order: Order) -> None: ...

    @router.subscriber("orders")
    async def second(order: Order) -> None: ...

    async def run() -> list[tuple[str, str | None]]:
        async with lifespan_of(app_with(router)):
            pass
        assert isinstance(router.broker, RecordingBroker)
        return router.broker.subscriptions

    (_, g1), (_, g2) = anyio.run(run)
    assert g1 != g2


def worker_app(broker: MemoryBroker, seen: list[tuple[str, int]], name: str, **sub: Any) -> FastAPI:
    router = StreamRouter(broker=broker)

    @router.subscriber("jobs", **sub)
    async def handle(order: Order) -> None:  # same qualified name in every "worker"
        seen.append((name, order.id))
        await anyio.lowlevel.checkpoint()

    return app_with(router)


@pytest.mark.parametrize("broadcast", [False, True])
async def test_n_workers_share_a_group_or_all_get_broadcast(broadcast: bool) -> None:
    broker = MemoryBroker()
    seen: list[tuple[str, int]] = []
    apps = [worker_app(broker, seen, f"w{i}", broadcast=broadcast) for i in range(3)]
    async with lifespan_of(apps[0]), lifespan_of(apps[1]), lifespan_of(apps[2]):
        for i in range(30):
            await broker.publish("jobs", json.dumps({"id": i}).encode())
        expected = 90 if broadcast else 30
        await until(lambda: len(seen) == expected)
        await anyio.sleep(0.05)
        assert len(seen) == expected
    ids = sorted(i for _, i in seen)
    if broadcast:
        assert ids == sorted(list(range(30)) * 3)
        for name in ("w0", "w1", "w2"):
            assert sorted(i for w, i in seen if w == name) == list(range(30))
    else:
        assert ids == list(range(30))  # each message handled exactly once


# == retries and dead letters =============================================================


@pytest.mark.parametrize("max_retries", [0, 1, 3, 5])
async def test_exactly_one_plus_max_retries_attempts_then_dlq(max_retries: int) -> None:
    router = StreamRouter()
    attempts: list[int] = []
    later: list[int] = []

    @router.subscriber("orders.{region}", max_retries=max_retries)
    async def handle(order: Order, region: str) -> None:
        if order.id == 1:
            attempts.append(order.id)
            raise KeyError("stock")
        later.append(order.id)

    async with lifespan_of(app_with(router)):
        dlq = router.broker.subscribe("orders.eu.dlq")
        body = b'{"id": 1}'
        started = time.monotonic()
        await router.publish("orders.eu", body, headers={"X-Trace": "t1", "k": "v"})
        (dead,) = await take(dlq, 1)
        elapsed = time.monotonic() - started
        await router.publish("orders.eu", {"id": 2})  # the consumer keeps going
        await until(lambda: later == [2])
        await nothing_more(dlq)
    assert len(attempts) == 1 + max_retries
    assert elapsed < 2.0  # retried at once, not with a backoff
    assert dead.topic == "orders.eu.dlq"
    assert dead.body == body
    assert dead.headers["X-Trace"] == "t1"
    assert dead.headers["k"] == "v"
    error = json.loads(dead.headers["x-error"])
    assert set(error) == {"type", "message"}
    assert error["type"] == "KeyError"
    assert "stock" in error["message"]


async def test_validation_failure_is_not_retried_and_x_error_has_the_errors() -> None:
    router = StreamRouter()
    calls: list[Order] = []

    @router.subscriber("orders", max_retries=5)
    async def handle(order: Order, x_tenant: Annotated[str, Header()]) -> None:
        calls.append(order)

    async with lifespan_of(app_with(router)):
        dlq = router.broker.subscribe("orders.dlq")
        await router.publish("orders", b'{"id": "nope"}', headers={"x-tenant": "a"})
        (dead,) = await take(dlq, 1)
        await nothing_more(dlq)
        await router.publish("orders", {"id": 5}, headers={"x-tenant": "a"})
        await until(lambda: len(calls) == 1)
    assert dead.body == b'{"id": "nope"}'
    assert dead.headers["x-tenant"] == "a"
    error = json.loads(dead.headers["x-error"])
    assert set(error) == {"type", "message", "errors"}
    assert error["type"] == "RequestValidationError"
    assert isinstance(error["message"], str)
    assert [e["loc"] for e in error["errors"]] == [["body", "id"]]
    assert error["errors"][0]["type"] == "int_parsing"
    assert calls == [Order(id=5)]


async def test_dependency_failure_is_retried_like_a_handler_failure() -> None:
    router = StreamRouter()
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("db down")
        return "db"

    done: list[str] = []

    @router.subscriber("jobs", max_retries=2)
    async def handle(order: Order, db: Annotated[str, Depends(flaky)]) -> None:
        done.append(db)

    async with lifespan_of(app_with(router)):
        dlq = router.broker.subscribe("jobs.dlq")
        await router.publish("jobs", {"id": 1})
        await until(lambda: done == ["db"])
        await nothing_more(dlq)
    assert len(attempts) == 3


async def test_a_pattern_subscriber_does_not_consume_its_own_dead_letters() -> None:
    router = StreamRouter()
    attempts: list[str] = []

    @router.subscriber("orders.{region}", max_retries=0)
    async def handle(region: str, request: StreamMessage) -> None:
        attempts.append(region)
        raise RuntimeError("always")

    async with lifespan_of(app_with(router)):
        dlq = router.broker.subscribe("orders.eu.dlq")
        await router.publish("orders.eu", b"x")
        await take(dlq, 1)
        await anyio.sleep(0.1)
    assert attempts == ["eu"]  # "orders.eu.dlq" is not "orders.{one segment}"


# == publishers ===========================================================================


class Done(BaseModel):
    order_id: int
    region: str


@pytest.mark.parametrize("publisher_on_top", [True, False])
async def test_publisher_stacked_above_or_below(publisher_on_top: bool) -> None:
    router = StreamRouter()

    async def handle(order: Order, region: str) -> Done:
        return Done(order_id=order.id, region=region)

    if publisher_on_top:
        router.publisher("orders.done")(router.subscriber("orders.{region}")(handle))
    else:
        router.subscriber("orders.{region}")(router.publisher("orders.done")(handle))

    async with lifespan_of(app_with(router)):
        done = router.broker.subscribe("orders.done")
        await router.publish("orders.us", {"id": 9})
        (result,) = await take(done, 1)
    assert json.loads(result.body) == {"order_id": 9, "region": "us"}


async def test_publisher_encodes_str_bytes_and_dict_results() -> None:
    router = StreamRouter()

    @router.publisher("out")
    @router.subscriber("in")
    async def handle(request: StreamMessage) -> Any:
        kind = (await request.body()).decode()
        return {"bytes": b"\x00raw", "str": "héllo", "dict": {"k": [1]}, "dc": Point(1, 2)}[kind]

    async with lifespan_of(app_with(router)):
        out = router.broker.subscribe("out")
        for kind in ("bytes", "str", "dict", "dc"):
            await router.publish("in", kind, headers={"content-type": "text/plain"})
        results = await take(out, 4)
    assert [m.body for m in results[:2]] == [b"\x00raw", "héllo".encode()]
    assert json.loads(results[2].body) == {"k": [1]}
    assert json.loads(results[3].body) == {"x": 1, "y": 2}


# == publish() ============================================================================


@pytest.mark.parametrize(
    ("body", "raw"),
    [
        (b"\x00\xffbytes", b"\x00\xffbytes"),
        ("héllo ☃", "héllo ☃".encode()),
        ({"a": [1, 2], "b": None}, None),
        ([1, "two", {"three": 3}], None),
        (Order(id=4, qty=2), None),
        (Point(x=1, y=2), None),
    ],
    ids=["bytes", "str", "dict", "list", "pydantic", "dataclass"],
)
async def test_publish_encodes_bodies_and_returns_the_id(body: Any, raw: bytes | None) -> None:
    router = StreamRouter()
    async with lifespan_of(app_with(router)):
        messages = router.broker.subscribe("t")
        message_id = await router.publish("t", body, headers={"h": "1"})
        (got,) = await take(messages, 1)
    assert isinstance(message_id, str)
    assert got.id == message_id
    assert got.headers == {"h": "1"}
    if raw is not None:
        assert got.body == raw
    else:
        expected = jsonable_encoder(body)
        assert json.loads(got.body) == expected


# == hooks ================================================================================


def test_hooks_are_bare_decorators_and_never_copied_into_fastapis_lists() -> None:
    events: list[str] = []
    router = StreamRouter(broker=RecordingBroker(events))

    def sync_hook() -> None:
        events.append("sync before_startup")

    async def async_hook() -> None:
        events.append("async before_startup")

    assert router.before_startup(sync_hook) is sync_hook
    assert router.before_startup(async_hook) is async_hook

    @router.after_startup
    async def after_startup() -> None:
        events.append(f"after_startup ping={await router.broker.ping()}")

    @router.before_shutdown
    def before_shutdown() -> None:
        events.append("before_shutdown")

    @router.after_shutdown
    async def after_shutdown() -> None:
        events.append(f"after_shutdown ping={await router.broker.ping()}")

    assert callable(after_startup) and callable(before_shutdown) and callable(after_shutdown)
    app = FastAPI()
    app.include_router(router)
    assert router.on_startup == [] and router.on_shutdown == []
    assert app.router.on_startup == [] and app.router.on_shutdown == []
    with TestClient(app):
        pass
    assert events == [
        "sync before_startup",
        "async before_startup",
        "broker start",
        "after_startup ping=True",
        "before_shutdown",
        "broker close",
        "after_shutdown ping=False",
    ]


def test_fastapi_router_on_startup_still_works_once() -> None:
    events: list[str] = []
    router = StreamRouter(on_startup=[lambda: events.append("fastapi on_startup")])

    @router.before_startup
    def hook() -> None:
        events.append("before_startup")

    app = app_with(router)
    with TestClient(app):
        pass
    assert events.count("fastapi on_startup") == 1
    assert events.count("before_startup") == 1


async def test_after_startup_may_publish_and_it_is_handled() -> None:
    router = StreamRouter()
    got: list[int] = []

    @router.subscriber("warmup")
    async def handle(order: Order) -> None:
        got.append(order.id)

    @router.after_startup
    async def publish_first() -> None:
        await router.publish("warmup", {"id": 42})

    async with lifespan_of(app_with(router)):
        await until(lambda: got == [42])


# == drain_timeout ========================================================================


async def test_shutdown_waits_for_in_flight_handlers_before_the_broker_closes() -> None:
    events: list[str] = []

    class Recording(RecordingBroker):
        async def publish(
            self, topic: str, body: bytes, *, headers: dict[str, str] | None = None
        ) -> str:
            events.append(f"publish {topic}")
            return await super().publish(topic, body, headers=headers)

    router = StreamRouter(broker=Recording(events), drain_timeout=5.0)
    started = anyio.Event()

    @router.after_shutdown
    def after_shutdown() -> None:
        events.append("after_shutdown")

    @router.publisher("after")
    @router.subscriber("slow")
    async def handle(request: StreamMessage) -> str:
        started.set()
        await anyio.sleep(0.3)
        events.append(f"handler done ping={await router.broker.ping()}")
        return "published while the broker still ran"

    async with lifespan_of(app_with(router)):
        await router.publish("slow", b"x")
        with anyio.fail_after(5):
            await started.wait()
        events.append("shutdown requested")
    assert events == [
        "broker start",
        "publish slow",
        "shutdown requested",
        "handler done ping=True",
        "publish after",
        "broker close",
        "after_shutdown",
    ]


async def test_drain_timeout_bounds_shutdown_with_a_stuck_handler() -> None:
    router = StreamRouter(drain_timeout=0.2)
    started = anyio.Event()
    cancelled: list[bool] = []

    @router.subscriber("stuck")
    async def handle(request: StreamMessage) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    begin = 0.0
    async with lifespan_of(app_with(router), within=5.0):
        await router.publish("stuck", b"x")
        with anyio.fail_after(5):
            await started.wait()
        begin = time.monotonic()
    assert time.monotonic() - begin < 3.0
    assert cancelled == [True]


# == health ===============================================================================


def test_health_204_while_running_and_503_with_a_reason_otherwise() -> None:
    router = StreamRouter(health_path="/health")
    app = app_with(router)
    client = TestClient(app)  # not entered: no lifespan, the broker does not run
    response = client.get("/health")
    assert response.status_code == 503
    assert response.text  # a reason
    with TestClient(app) as running:
        ok = running.get("/health")
        assert ok.status_code == 204
        assert ok.content == b""


def test_health_503_when_ping_answers_false() -> None:
    class Down(RecordingBroker):
        async def ping(self) -> bool:
            return False

    app = app_with(StreamRouter(broker=Down(), health_path="/healthz"))
    with TestClient(app) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.text


def test_health_and_asyncapi_paths_under_a_prefix() -> None:
    router = StreamRouter(health_path="/health", asyncapi_path="/asyncapi")
    app = FastAPI()
    app.include_router(router, prefix="/svc")
    with TestClient(app) as client:
        assert client.get("/svc/health").status_code == 204
        document = client.get("/svc/asyncapi.json")
        assert document.status_code == 200
        assert document.json()["asyncapi"] == "3.0.0"
        page = client.get("/svc/asyncapi")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")


# == MemoryBroker and the Broker protocol =================================================


def test_memory_broker_signature_and_protocol() -> None:
    params = inspect.signature(MemoryBroker).parameters
    assert list(params) == ["history", "claim_idle"]
    assert params["history"].default == 1000
    assert params["claim_idle"].default == 30.0
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    broker = MemoryBroker(history=5, claim_idle=1.5)
    assert isinstance(broker, Broker)
    subscribe = inspect.signature(broker.subscribe).parameters
    assert list(subscribe) == ["topic", "group", "last_id"]
    assert subscribe["group"].kind is inspect.Parameter.KEYWORD_ONLY
    assert subscribe["last_id"].kind is inspect.Parameter.KEYWORD_ONLY
    publish = inspect.signature(broker.publish).parameters
    assert list(publish) == ["topic", "body", "headers"]
    assert publish["headers"].kind is inspect.Parameter.KEYWORD_ONLY


def test_message_fields_in_order() -> None:
    message = Message("1-0", "t", b"body", {"a": "b"}, "g", 2)
    assert (message.id, message.topic, message.body) == ("1-0", "t", b"body")
    assert (message.headers, message.group, message.attempt) == ({"a": "b"}, "g", 2)
    fields = [f.name for f in dataclasses.fields(Message)]
    assert fields == ["id", "topic", "body", "headers", "group", "attempt"]


async def test_start_close_idempotent_and_ping() -> None:
    broker = MemoryBroker()
    assert await broker.ping() is False
    await broker.close()  # before start: nothing to do
    await broker.start()
    await broker.start()
    assert await broker.ping() is True
    messages = broker.subscribe("t")
    await broker.publish("t", b"1")
    assert [m.body for m in await take(messages, 1)] == [b"1"]
    await broker.close()
    await broker.close()
    assert await broker.ping() is False
    with anyio.fail_after(2):  # closing ends open subscriptions
        assert await anext(messages, None) is None


async def test_broadcast_first_delivery_fields() -> None:
    broker = MemoryBroker()
    await broker.start()
    try:
        a, b = broker.subscribe("t"), broker.subscribe("t")
        ids = [await broker.publish("t", str(i).encode(), headers={"i": str(i)}) for i in range(3)]
        for sub in (a, b):
            got = await take(sub, 3)
            assert [m.id for m in got] == ids
            assert [m.body for m in got] == [b"0", b"1", b"2"]
            assert [m.headers for m in got] == [{"i": "0"}, {"i": "1"}, {"i": "2"}]
            assert all(m.group is None and m.attempt == 1 and m.topic == "t" for m in got)
        assert len(set(ids)) == 3
    finally:
        await broker.close()


async def test_last_id_semantics() -> None:
    broker = MemoryBroker(history=3)
    await broker.start()
    try:
        ids = [await broker.publish("t", str(i).encode()) for i in range(6)]
        # None: only new ones
        new_only = broker.subscribe("t", last_id=None)
        # a known id: resume right after it
        resumed = broker.subscribe("t", last_id=ids[4])
        # older than the retained history: from the oldest retained (3, 4, 5)
        too_old = broker.subscribe("t", last_id=ids[0])
        zero = broker.subscribe("t", last_id="0-0")
        malformed = [
            broker.subscribe("t", last_id=bad) for bad in ("garbage", "", "1-2-3", "-5", "abc-1")
        ]
        assert [m.body for m in await take(too_old, 3)] == [b"3", b"4", b"5"]
        assert [m.body for m in await take(zero, 3)] == [b"3", b"4", b"5"]
        latest = await broker.publish("t", b"new")
        assert [m.id for m in await take(resumed, 2)] == [ids[5], latest]
        assert [m.id for m in await take(too_old, 1)] == [latest]
        assert [m.id for m in await take(new_only, 1)] == [latest]
        for sub in malformed:
            assert [m.id for m in await take(sub, 1)] == [latest]
    finally:
        await broker.close()


async def test_group_shares_and_claim_idle_redelivers_with_attempt_counting() -> None:
    broker = MemoryBroker(claim_idle=0.2)
    await broker.start()
    try:
        a = broker.subscribe("jobs", group="g")
        b = broker.subscribe("jobs", group="g")
        first = await broker.publish("jobs", b"job")
        got_a = (await take(a, 1))[0]
        assert (got_a.id, got_a.group, got_a.attempt) == (first, "g", 1)
        # not acked: redelivered after claim_idle to the group (b here), attempt 2
        got_b = (await take(b, 1, within=3))[0]
        assert (got_b.id, got_b.body, got_b.attempt, got_b.group) == (first, b"job", 2, "g")
        # still not acked: a third attempt, to whichever consumer asks
        async with anyio.create_task_group() as tg:
            third: list[Message] = []

            async def read(sub: AsyncIterator[Message]) -> None:
                third.append(await anext(sub))
                tg.cancel_scope.cancel()

            tg.start_soon(read, a)
            tg.start_soon(read, b)
            with anyio.fail_after(3):
                await anyio.sleep_forever()
        assert third[0].id == first and third[0].attempt == 3
        await broker.ack(third[0])
        await nothing_more(a, 0.4)
        await nothing_more(b, 0.1)
    finally:
        await broker.close()


async def test_group_each_message_once_and_acked_never_again() -> None:
    broker = MemoryBroker(claim_idle=0.2)
    await broker.start()
    try:
        members = [broker.subscribe("jobs", group="g") for _ in range(3)]
        seen: list[str] = []

        async def consume(sub: AsyncIterator[Message]) -> None:
            async for message in sub:
                seen.append(message.id)
                await broker.ack(message)

        ids = []
        async with anyio.create_task_group() as tg:
            for sub in members:
                tg.start_soon(consume, sub)
            ids = [await broker.publish("jobs", b"%d" % i) for i in range(50)]
            await until(lambda: len(seen) >= 50)
            await anyio.sleep(0.5)  # past claim_idle: nothing is redelivered
            tg.cancel_scope.cancel()
        assert sorted(seen) == sorted(ids)
    finally:
        await broker.close()


async def test_groups_are_independent_and_start_with_new_messages() -> None:
    broker = MemoryBroker()
    await broker.start()
    try:
        await broker.publish("t", b"before")
        g1 = broker.subscribe("t", group="one")
        g2 = broker.subscribe("t", group="two")
        await broker.publish("t", b"after")
        assert [m.body for m in await take(g1, 1)] == [b"after"]
        assert [m.body for m in await take(g2, 1)] == [b"after"]
        await nothing_more(g1)
    finally:
        await broker.close()


async def test_history_is_bounded_for_a_subscriber_that_falls_behind() -> None:
    broker = MemoryBroker(history=10)
    await broker.start()
    try:
        slow = broker.subscribe("t")
        ids = [await broker.publish("t", b"%d" % i) for i in range(1000)]
        got: list[Message] = []
        with anyio.move_on_after(0.3):
            async for message in slow:
                got.append(message)
        assert 1 <= len(got) <= 10
        assert got[-1].id == ids[-1]
        assert [m.id for m in got] == ids[-len(got) :]  # in order, no duplicates
        replay = broker.subscribe("t", last_id="0")
        latest = await broker.publish("t", b"x")
        replayed = await take(replay, 10)  # the 10 retained, the new one last
        assert [m.id for m in replayed] == [*ids[-9:], latest]
        await nothing_more(replay)
    finally:
        await broker.close()


async def test_pattern_subscription_matches_one_dot_free_segment() -> None:
    broker = MemoryBroker()
    await broker.start()
    try:
        sub = broker.subscribe("orders.{region}")
        await broker.publish("orders.eu.dlq", b"no")
        await broker.publish("orders", b"no")
        await broker.publish("orders.eu", b"eu")
        await broker.publish("orders.us", b"us")
        got = await take(sub, 2)
        assert [(m.topic, m.body) for m in got] == [("orders.eu", b"eu"), ("orders.us", b"us")]
        await nothing_more(sub)
    finally:
        await broker.close()


# == the worker command ===================================================================

WORKER_APP = """
import os
from fastapi import FastAPI
from starlette.applications import Starlette
from contextlib import asynccontextmanager
from fastapi_streamkit import StreamRouter

@asynccontextmanager
async def sub_lifespan(app):
    print("sub-app up", flush=True)
    yield
    print("sub-app down", flush=True)

router = StreamRouter()
router.mount("/sub", Starlette(lifespan=sub_lifespan))

@router.subscriber("jobs")
async def handle(body: dict) -> None:
    print("handled", body["n"], flush=True)

@router.after_startup
async def ready() -> None:
    await router.publish("jobs", {"n": 7})
    print("after_startup", flush=True)

@router.after_shutdown
def bye() -> None:
    print("after_shutdown", flush=True)

app = FastAPI()
app.include_router(router)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_worker_command_runs_the_lifespan_and_exits_0(tmp_path: Path, signum: int) -> None:
    (tmp_path / "contract_worker_app.py").write_text(textwrap.dedent(WORKER_APP))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastapi_streamkit", "worker", "contract_worker_app:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 20
        while not any("handled 7" in line for line in lines):
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, "".join(lines)
            lines.append(line)
        proc.send_signal(signum)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    output = "".join(lines) + rest
    assert proc.returncode == 0, output
    order = [
        word
        for line in output.splitlines()
        for word in ("sub-app up", "after_startup", "sub-app down", "after_shutdown")
        if line.strip() == word
    ]
    assert order == ["sub-app up", "after_startup", "sub-app down", "after_shutdown"], output


def test_worker_needs_no_http_server(tmp_path: Path) -> None:
    """Only the lifespan runs: a route of the app is never served (nothing listens)."""
    app_file = tmp_path / "contract_plain_app.py"
    app_file.write_text(
        textwrap.dedent(
            """
            from starlette.applications import Starlette
            from starlette.routing import Route
            from starlette.responses import PlainTextResponse
            from contextlib import asynccontextmanager

            @asynccontextmanager
            async def lifespan(app):
                print("up", flush=True)
                yield
                print("down", flush=True)

            home = Route("/", lambda r: PlainTextResponse("x"))
            app = Starlette(lifespan=lifespan, routes=[home])
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastapi_streamkit", "worker", "contract_plain_app:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        deadline = time.monotonic() + 20
        while first.strip() != "up":
            assert first and time.monotonic() < deadline
            first = proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0, rest
    assert "down" in rest.splitlines()
    assert "Uvicorn running" not in rest


# == more adversarial cases ===============================================================


class QueueBroker:
    """A user-written `Broker`: broadcast only, ``subscribe`` an async generator function."""

    def __init__(self) -> None:
        self.running = False
        self.count = 0
        self.queues: list[tuple[str, MemoryObjectSendStream[Message]]] = []
        self.acked: list[Message] = []

    async def start(self) -> None:
        self.running = True

    async def close(self) -> None:
        self.running = False
        for _, stream in self.queues:
            stream.close()
        self.queues.clear()

    async def ping(self) -> bool:
        return self.running

    async def publish(
        self, topic: str, body: bytes, *, headers: dict[str, str] | None = None
    ) -> str:
        self.count += 1
        message = Message(str(self.count), topic, body, dict(headers or {}))
        for wanted, stream in self.queues:
            if wanted == topic:
                await stream.send(message)
        return message.id

    async def subscribe(
        self, topic: str, *, group: str | None = None, last_id: str | None = None
    ) -> AsyncIterator[Message]:
        send, receive = anyio.create_memory_object_stream[Message](100)
        self.queues.append((topic, send))
        with receive:
            async for message in receive:
                yield message

    async def ack(self, message: Message) -> None:
        self.acked.append(message)


def test_a_user_written_broker_plugs_in() -> None:
    broker = QueueBroker()
    assert isinstance(broker, Broker)
    router = StreamRouter(broker=broker, health_path="/health")
    got: list[int] = []

    @router.subscriber("orders", broadcast=True)
    async def handle(order: Order) -> None:
        got.append(order.id)

    app = app_with(router)
    for cycle in (1, 2):
        with TestClient(app) as client:
            assert client.get("/health").status_code == 204
            portal(client).call(router.publish, "orders", {"id": cycle})
            portal(client).call(until, lambda c=cycle: len(got) == c)
        assert not broker.running
    assert got == [1, 2]


def test_sync_handler_and_sync_yield_dependency_through_the_router() -> None:
    events: list[str] = []
    router = StreamRouter()

    def session() -> Iterator[str]:
        events.append("open")
        yield "db"
        events.append("close")

    @router.publisher("out")
    @router.subscriber("in")
    def handle(order: Order, db: Annotated[str, Depends(session)]) -> dict[str, Any]:
        events.append("handle")
        return {"id": order.id, "db": db}

    async def scenario() -> Message:
        async with lifespan_of(app_with(router)):
            out = router.broker.subscribe("out")
            await router.publish("in", {"id": 3})
            (result,) = await take(out, 1)
            await until(lambda: "close" in events)
            return result

    result = anyio.run(scenario)
    assert json.loads(result.body) == {"id": 3, "db": "db"}
    assert events == ["open", "handle", "close"]


async def test_several_topic_parameters_each_one_segment() -> None:
    router = StreamRouter()
    got: list[tuple[str, str]] = []

    @router.subscriber("shop.{region}.{kind}")
    async def handle(region: str, kind: str, request: StreamMessage) -> None:
        got.append((region, kind))

    async with lifespan_of(app_with(router)):
        await router.publish("shop.eu.refund", b"")
        await router.publish("shop.eu.refund.extra", b"")  # four segments: no match
        await router.publish("shop.us.sale", b"")
        await until(lambda: len(got) == 2)
        await anyio.sleep(0.05)
    assert got == [("eu", "refund"), ("us", "sale")]


def test_app_dependency_overrides_set_while_running_apply_to_the_next_message() -> None:
    def real_db() -> str:
        return "real"

    router = StreamRouter()
    seen: list[str] = []

    @router.subscriber("jobs")
    async def handle(order: Order, db: Annotated[str, Depends(real_db)]) -> None:
        seen.append(db)

    app = app_with(router)
    app.dependency_overrides[real_db] = lambda: "set before startup"
    with TestClient(app) as client:
        portal(client).call(router.publish, "jobs", {"id": 1})
        portal(client).call(until, lambda: len(seen) == 1)
        app.dependency_overrides[real_db] = lambda: "set while running"
        portal(client).call(router.publish, "jobs", {"id": 2})
        portal(client).call(until, lambda: len(seen) == 2)
        app.dependency_overrides.clear()
        portal(client).call(router.publish, "jobs", {"id": 3})
        portal(client).call(until, lambda: len(seen) == 3)
    assert seen == ["set before startup", "set while running", "real"]


def test_a_failed_cycle_then_a_good_cycle() -> None:
    events: list[str] = []
    router = StreamRouter(broker=RecordingBroker(events))
    fail = [True]
    got: list[int] = []

    @router.after_startup
    def maybe_fail() -> None:
        if fail[0]:
            raise RuntimeError("first start fails")

    @router.subscriber("jobs")
    async def handle(order: Order) -> None:
        got.append(order.id)

    app = app_with(router)
    with pytest.raises(Exception, match="first start fails"), TestClient(app):
        pass
    assert events == ["broker start", "broker close"]
    fail[0] = False
    with TestClient(app) as client:
        portal(client).call(router.publish, "jobs", {"id": 5})
        portal(client).call(until, lambda: got == [5])
    assert events == ["broker start", "broker close"] * 2


# == router.websocket =====================================================================


def test_websocket_signature_adds_keyword_only_frame_models() -> None:
    params = inspect.signature(StreamRouter().websocket).parameters
    assert list(params)[0] == "path"
    for name in ("receive", "send"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default is None
    assert "dependencies" in params and "name" in params  # FastAPI's own keywords stay


def test_our_websocket_is_injected_through_nested_includes_with_dependencies() -> None:
    ran: list[str] = []

    def inner_level(websocket: StarletteWebSocket) -> None:
        ran.append(f"inner ours={isinstance(websocket, WebSocket)}")

    def outer_level(websocket: StarletteWebSocket) -> None:
        ran.append(f"outer ours={isinstance(websocket, WebSocket)}")

    router = StreamRouter()

    @router.websocket("/echo", receive=Order, send=Order)
    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        frame = await websocket.receive_json()
        await websocket.send_json({"ours": isinstance(websocket, WebSocket), "echo": frame})
        await websocket.close()

    middle = APIRouter()
    middle.include_router(router, prefix="/inner", dependencies=[Depends(inner_level)])
    app = FastAPI()
    app.include_router(middle, prefix="/outer", dependencies=[Depends(outer_level)])
    with serve(app) as server:
        url = f"ws://127.0.0.1:{server.port}/outer/inner/echo"
        with ws_connect(url, open_timeout=5) as ws:
            ws.send('{"id": 1}')
            reply = json.loads(ws.recv(timeout=5))
    assert reply == {"ours": True, "echo": {"id": 1}}
    assert sorted(ran) == ["inner ours=True", "outer ours=True"]  # both include levels ran


async def test_two_routers_sharing_one_broker_close_it_once_after_both_drained() -> None:
    events: list[str] = []
    shared = RecordingBroker(events)
    first, second = StreamRouter(broker=shared), StreamRouter(broker=shared)
    started = anyio.Event()

    @first.publisher("first.out")
    @first.subscriber("first.in")
    async def slow(request: StreamMessage) -> str:
        started.set()
        await anyio.sleep(0.2)
        return "done"

    for name, router in (("first", first), ("second", second)):

        @router.before_shutdown
        async def before_shutdown(name: str = name) -> None:
            events.append(f"{name} before_shutdown ping={await shared.ping()}")

    app = app_with(first, second)
    async with lifespan_of(app):
        await shared.publish("first.in", b"x")
        with anyio.fail_after(5):
            await started.wait()
    assert events.count("broker close") == 1
    assert events[-1] == "broker close"
    assert "first before_shutdown ping=True" in events
    assert "second before_shutdown ping=True" in events
    await shared.start()
    try:
        replay = shared.subscribe("first.out", last_id="0")
        await shared.publish("first.out", b"marker")
        assert [m.body for m in await take(replay, 2)] == [b"done", b"marker"]
    finally:
        await shared.close()


def test_a_mounted_sub_apps_router_sharing_the_hosts_broker_leaves_it_to_the_host() -> None:
    events: list[str] = []
    shared = RecordingBroker(events)
    host_router, sub_router = StreamRouter(broker=shared), StreamRouter(broker=shared)
    got: list[str] = []

    @sub_router.subscriber("sub.jobs")
    async def sub_job(request: StreamMessage) -> None:
        got.append("sub")

    @host_router.subscriber("host.jobs")
    async def host_job(request: StreamMessage) -> None:
        got.append("host")

    @sub_router.after_shutdown
    async def sub_down() -> None:
        events.append(f"sub after_shutdown ping={await shared.ping()}")

    sub = app_with(sub_router)
    host_router.mount("/sub", sub)
    host = app_with(host_router)
    for _ in range(2):
        with TestClient(host) as client:
            portal(client).call(shared.publish, "sub.jobs", b"")
            portal(client).call(shared.publish, "host.jobs", b"")
            portal(client).call(until, lambda: len(got) == 2)
        got.clear()
    cycle = ["broker start", "sub after_shutdown ping=True", "broker close"]
    assert events == cycle * 2
