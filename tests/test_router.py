"""StreamRouter: lifespan wiring through include_router, hooks, subscribers, publishers, health."""

import contextlib
import dataclasses
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
import httpx
import pytest
from fastapi import APIRouter, Body, Depends, FastAPI, Header, HTTPException, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.types import Message as ASGIMessage

from fastapi_streamkit import MemoryBroker, StreamMessage, StreamRouter
from fastapi_streamkit.brokers.base import Message
from fastapi_streamkit.exceptions import UsageError
from tests._asgi import running
from tests._server import free_port, serve

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    id: int
    qty: int = 1


async def startup_reply(app: Any) -> tuple[ASGIMessage, BaseException | None]:
    """Send ``lifespan.startup`` only; return the reply and what the app raised."""
    to_app, app_inbox = anyio.create_memory_object_stream[ASGIMessage](1)
    from_app, replies = anyio.create_memory_object_stream[ASGIMessage](10)
    raised: list[BaseException] = []

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}

    async def run() -> None:
        try:
            await app(scope, app_inbox.receive, from_app.send)
        except Exception as exc:
            raised.append(exc)

    with to_app, app_inbox, from_app, replies:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            with anyio.fail_after(5):
                await to_app.send({"type": "lifespan.startup"})
                reply = await replies.receive()
    return reply, raised[0] if raised else None


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not predicate():  # noqa: ASYNC110 - polling what handlers did, bounded
            await anyio.sleep(0.005)


def app_with(router: StreamRouter, **kwargs: Any) -> FastAPI:
    app = FastAPI(**kwargs)
    app.include_router(router)
    return app


# -- lifespan wiring ----------------------------------------------------------------------


async def test_include_router_starts_broker_and_consumers_before_startup_complete() -> None:
    router = StreamRouter()
    got: list[Order] = []

    @router.subscriber("orders")
    async def handle(order: Order) -> None:
        got.append(order)

    assert not await router.broker.ping()
    async with running(app_with(router)):
        assert await router.broker.ping()
        await router.publish("orders", {"id": 7})  # the consumer is already subscribed
        await until(lambda: len(got) == 1)
    assert got == [Order(id=7)]
    assert not await router.broker.ping()


async def test_a_broker_that_cannot_start_fails_startup() -> None:
    class Unreachable(MemoryBroker):
        async def start(self) -> None:
            raise ConnectionRefusedError("no broker at 127.0.0.1:1")

    events: list[str] = []
    router = StreamRouter(broker=Unreachable())
    router.before_startup(lambda: events.append("before_startup"))
    router.after_startup(lambda: events.append("after_startup"))
    router.after_shutdown(lambda: events.append("after_shutdown"))
    reply, raised = await startup_reply(app_with(router))
    assert reply["type"] == "lifespan.startup.failed"
    assert "no broker at 127.0.0.1:1" in reply["message"]
    assert raised is not None
    assert events == ["before_startup", "after_shutdown"]  # rolled back, never half-started


@pytest.mark.parametrize("layout", ["twice", "nested", "nested_and_direct"])
async def test_router_lifespan_runs_once_per_cycle(layout: str) -> None:
    router = StreamRouter()
    calls: list[str] = []
    for hook in ("before_startup", "after_startup", "before_shutdown", "after_shutdown"):
        getattr(router, hook)(lambda hook=hook: calls.append(hook))
    handled: list[int] = []

    @router.subscriber("n")
    async def handle(n: Annotated[int, Body()]) -> None:
        handled.append(n)

    app = FastAPI()
    if layout == "twice":
        app.include_router(router)
        app.include_router(router, prefix="/again")
    else:
        parent = APIRouter()
        parent.include_router(router)
        app.include_router(parent)
        if layout == "nested_and_direct":
            app.include_router(router, prefix="/direct")
    for _cycle in range(2):  # a second cycle works too
        async with running(app):
            await router.publish("n", 1)
            await until(lambda: len(handled) >= 1)
            await anyio.sleep(0.05)  # a second consumer would have handled it by now
        assert handled == [1]
        handled.clear()
    assert calls == ["before_startup", "after_startup", "before_shutdown", "after_shutdown"] * 2


def test_hooks_run_in_the_documented_order_with_host_lifespan_and_sub_apps() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def host(app: FastAPI) -> AsyncIterator[None]:
        events.append("host startup")
        yield
        events.append("host shutdown")

    def sub_app(name: str) -> FastAPI:
        @contextlib.asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            events.append(f"{name} startup")
            yield
            events.append(f"{name} shutdown")

        return FastAPI(lifespan=lifespan)

    class Recording(MemoryBroker):
        async def start(self) -> None:
            events.append("broker start")
            await super().start()

        async def close(self) -> None:
            events.append("broker close")
            await super().close()

    router = StreamRouter(broker=Recording())
    router.mount("/a", sub_app("a"), name="a")
    router.mount("/b", sub_app("b"), startup_timeout=5, shutdown_timeout=5)

    @router.before_startup
    def before_startup() -> None:
        events.append("before_startup")

    @router.after_startup
    async def after_startup() -> None:
        events.append("after_startup")

    @router.before_shutdown
    async def before_shutdown() -> None:
        events.append("before_shutdown")

    @router.after_shutdown
    def after_shutdown() -> None:
        events.append("after_shutdown")

    with TestClient(app_with(router, lifespan=host)):
        events.append("serving")
    assert events == [
        "host startup",
        "before_startup",
        "broker start",
        "a startup",
        "b startup",
        "after_startup",
        "serving",
        "before_shutdown",
        "b shutdown",
        "a shutdown",
        "broker close",
        "after_shutdown",
        "host shutdown",
    ]


async def test_after_startup_can_publish_and_the_message_is_handled() -> None:
    router = StreamRouter()
    got: list[str] = []

    @router.after_startup
    async def greet() -> None:
        await router.publish("greetings", "hello")

    @router.subscriber("greetings")
    async def handle(request: StreamMessage) -> None:
        got.append((await request.body()).decode())

    async with running(app_with(router)):
        await until(lambda: got == ["hello"])


async def test_shutdown_drains_in_flight_handlers_before_the_broker_closes() -> None:
    router = StreamRouter(drain_timeout=5)
    started, release, finished = anyio.Event(), anyio.Event(), anyio.Event()
    outputs: list[bytes] = []

    @router.subscriber("jobs")
    @router.publisher("jobs.done")
    async def work(n: Annotated[int, Body()]) -> int:
        started.set()
        await release.wait()
        finished.set()
        return n * 2

    async def collect() -> None:  # ends when the broker closes
        async for message in router.broker.subscribe("jobs.done"):
            outputs.append(message.body)

    async def release_later() -> None:
        await anyio.sleep(0.2)
        release.set()

    @router.before_shutdown
    async def begin() -> None:  # the handler is still in flight when shutdown begins
        assert started.is_set() and not finished.is_set()
        tg.start_soon(release_later)

    async with anyio.create_task_group() as tg:
        async with running(app_with(router)):
            tg.start_soon(collect)
            await router.publish("jobs", 21)
            await started.wait()
    assert finished.is_set()
    assert outputs == [b"42"]  # published before the broker closed


async def test_drain_timeout_bounds_the_wait_for_a_stuck_handler() -> None:
    router = StreamRouter(drain_timeout=0.2)
    started, cancelled = anyio.Event(), anyio.Event()

    @router.subscriber("stuck")
    async def stuck(request: StreamMessage) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()

    async with running(app_with(router), within=3):
        await router.publish("stuck", b"")
        await started.wait()
    assert cancelled.is_set()


# -- subscribers ----------------------------------------------------------------------------


async def test_handler_has_fastapi_semantics() -> None:
    router = StreamRouter()
    events: list[str] = []
    got: list[tuple[Any, ...]] = []

    def sync_dep() -> str:
        return "sync"

    async def async_dep(value: Annotated[str, Depends(sync_dep)]) -> str:
        return value + "+async"

    async def resource() -> AsyncIterator[str]:
        events.append("setup")
        yield "resource"
        events.append("teardown")

    @router.subscriber("orders.{region}")
    @router.publisher("accepted.orders")
    async def handle(
        order: Order,
        region: str,
        dep: Annotated[str, Depends(async_dep)],
        res: Annotated[str, Depends(resource)],
        x_tenant: Annotated[str, Header()],
    ) -> dict[str, Any]:
        got.append((order, region, dep, res, x_tenant))
        return {"id": order.id, "region": region}

    @router.subscriber("accepted.orders")
    async def accepted(body: dict[str, Any]) -> None:
        events.append(f"published {body}")

    async with running(app_with(router)):
        await router.publish("orders.eu", {"id": 1, "qty": 2}, headers={"X-Tenant": "acme"})
        await until(lambda: len(events) == 3)
    assert got == [(Order(id=1, qty=2), "eu", "sync+async", "resource", "acme")]
    # the reply is published before the yield dependency's teardown runs
    assert events[0] == "setup"
    assert sorted(events[1:]) == ["published {'id': 1, 'region': 'eu'}", "teardown"]


async def test_publish_before_teardown_order_is_observable() -> None:
    order: list[str] = []

    class Spy(MemoryBroker):
        async def publish(self, topic: str, body: bytes, *, headers: Any = None) -> str:
            if topic == "out":
                order.append("publish")
            return await super().publish(topic, body, headers=headers)

    router = StreamRouter(broker=Spy())

    async def resource() -> AsyncIterator[None]:
        yield
        order.append("teardown")

    @router.subscriber("in")
    @router.publisher("out")
    async def handle(_: Annotated[None, Depends(resource)]) -> str:
        return "x"

    async with running(app_with(router)):
        await router.publish("in", b"")
        await until(lambda: len(order) == 2)
    assert order == ["publish", "teardown"]


async def test_dependency_overrides_are_read_at_call_time() -> None:
    router = StreamRouter()
    got: list[str] = []

    def real() -> str:
        return "real"

    @router.subscriber("t")
    async def handle(value: Annotated[str, Depends(real)]) -> None:
        got.append(value)

    app = app_with(router)
    async with running(app):
        await router.publish("t", b"")
        await until(lambda: got == ["real"])
        app.dependency_overrides[real] = lambda: "fake"  # set while running
        await router.publish("t", b"")
        await until(lambda: got == ["real", "fake"])


def test_default_group_is_the_handler_qualified_name_and_router_group_wins() -> None:
    router = StreamRouter()
    grouped = StreamRouter(group="billing")

    @router.subscriber("a")
    async def plain() -> None: ...

    @router.subscriber("a", group="mine")
    @grouped.subscriber("a")
    async def explicit() -> None: ...

    @router.subscriber("a", broadcast=True)
    @grouped.subscriber("b", group="own")
    async def every() -> None: ...

    assert [(s.group, s.broadcast) for s in router.subscribers] == [
        (f"{__name__}.{plain.__qualname__}", False),
        ("mine", False),
        (None, True),
    ]
    assert [s.group for s in grouped.subscribers] == ["billing", "own"]


async def test_workers_of_one_app_share_group_messages_and_broadcast_reaches_all() -> None:
    broker = MemoryBroker()
    shared: list[tuple[int, int]] = []
    everyone: list[tuple[int, int]] = []

    def worker(index: int) -> FastAPI:
        router = StreamRouter(broker=broker)

        async def handle(n: Annotated[int, Body()]) -> None:
            shared.append((index, n))
            await anyio.sleep(0.001)

        async def fan(n: Annotated[int, Body()]) -> None:
            everyone.append((index, n))

        handle.__qualname__ = fan.__qualname__ = "worker"  # the same code in 4 processes
        router.subscriber("work")(handle)
        router.subscriber("news", broadcast=True)(fan)
        return app_with(router)

    async with contextlib.AsyncExitStack() as stack:
        for index in range(4):
            await stack.enter_async_context(running(worker(index)))
        for n in range(40):
            await broker.publish("work", str(n).encode())
        await broker.publish("news", b"1")
        await until(lambda: len(shared) == 40 and len(everyone) == 4)
        await anyio.sleep(0.05)
        assert sorted(n for _, n in shared) == list(range(40))  # each once
        assert len({i for i, _ in shared}) > 1  # shared among workers
        assert sorted(everyone) == [(i, 1) for i in range(4)]


@pytest.mark.parametrize(
    ("exc", "max_retries", "attempts"),
    [
        (RuntimeError("boom"), 3, 4),
        (HTTPException(409, "conflict"), 2, 3),
        (ValueError("bad"), 0, 1),
    ],
)
async def test_a_failing_handler_is_retried_then_dead_lettered(
    exc: Exception, max_retries: int, attempts: int
) -> None:
    router = StreamRouter()
    calls: list[bytes] = []
    good: list[bytes] = []

    @router.subscriber("jobs.{kind}", max_retries=max_retries)
    async def handle(request: StreamMessage, kind: str) -> None:
        body = await request.body()
        if kind == "bad":
            calls.append(body)
            raise exc
        good.append(body)

    @router.subscriber("jobs.bad.dlq")
    async def dead(request: StreamMessage) -> None:
        dlq.append((await request.body(), dict(request.headers)))

    dlq: list[tuple[bytes, dict[str, str]]] = []
    async with running(app_with(router)):
        await router.publish("jobs.bad", b"payload", headers={"X-Trace": "t1"})
        await router.publish("jobs.good", b"next")  # the consumer keeps going
        await until(lambda: len(dlq) == 1 and good == [b"next"])
    assert calls == [b"payload"] * attempts
    body, headers = dlq[0]
    assert body == b"payload" and headers["x-trace"] == "t1"
    assert json.loads(headers["x-error"]) == {"type": type(exc).__name__, "message": str(exc)}


async def test_a_validation_failure_is_not_retried_and_carries_the_errors() -> None:
    router = StreamRouter()
    calls: list[Order] = []
    dlq: list[StreamMessage] = []

    @router.subscriber("orders")
    async def handle(order: Order) -> None:
        calls.append(order)

    @router.subscriber("orders.dlq")
    async def dead(request: StreamMessage) -> None:
        dlq.append(request)

    async with running(app_with(router)):
        await router.publish("orders", {"qty": "many"})
        await until(lambda: len(dlq) == 1)
        await router.publish("orders", {"id": 2})
        await until(lambda: len(calls) == 1)
    error = json.loads(dlq[0].headers["x-error"])
    assert error["type"] == "RequestValidationError"
    assert {tuple(e["loc"]) for e in error["errors"]} == {("body", "id"), ("body", "qty")}
    assert await dlq[0].json() == {"qty": "many"}


async def test_a_flaky_handler_succeeds_on_a_retry() -> None:
    router = StreamRouter()
    attempts: list[int] = []
    outputs: list[bytes] = []

    @router.subscriber("flaky", max_retries=2)
    @router.publisher("flaky.out")
    async def handle() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return "done"

    @router.subscriber("flaky.out")
    async def out(request: StreamMessage) -> None:
        outputs.append(await request.body())

    @router.subscriber("flaky.dlq")
    async def dead() -> None:
        outputs.append(b"dead")

    async with running(app_with(router)):
        await router.publish("flaky", b"")
        await until(lambda: outputs == [b"done"])
        await anyio.sleep(0.05)
    assert len(attempts) == 3 and outputs == [b"done"]


@dataclasses.dataclass
class Point:
    x: int
    y: int


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\x00raw", b"\x00raw"),
        ("héllo", "héllo".encode()),
        ({"a": 1}, b'{"a":1}'),
        ([1, "x"], b'[1,"x"]'),
        (Order(id=3), b'{"id":3,"qty":1}'),
        (Point(1, 2), b'{"x":1,"y":2}'),
        (5, b"5"),
    ],
)
async def test_publish_encodes_bodies(body: Any, expected: bytes) -> None:
    router = StreamRouter()
    got: list[Message] = []

    @router.subscriber("enc")
    async def handle(request: StreamMessage) -> None:
        got.append(Message("", "enc", await request.body(), dict(request.headers)))

    async with running(app_with(router)):
        message_id = await router.publish("enc", body, headers={"k": "v"})
        assert isinstance(message_id, str) and message_id
        await until(lambda: len(got) == 1)
    assert got[0].body == expected and got[0].headers == {"k": "v"}


@pytest.mark.parametrize("above", [True, False])
async def test_publisher_stacks_either_way_and_none_is_not_published(above: bool) -> None:
    router = StreamRouter()
    outputs: list[bytes] = []

    async def handle(n: Annotated[int, Body()]) -> int | None:
        return None if n == 0 else n + 1

    if above:
        router.publisher("out")(router.subscriber("in")(handle))
    else:
        router.subscriber("in")(router.publisher("out")(handle))

    @router.subscriber("out")
    async def out(request: StreamMessage) -> None:
        outputs.append(await request.body())

    assert router.subscribers[0].publishes == ("out",)
    async with running(app_with(router)):
        for n in (0, 1, 2):
            await router.publish("in", n)
        await until(lambda: len(outputs) == 2)
        await anyio.sleep(0.05)
    assert outputs == [b"2", b"3"]


async def test_a_broadcast_subscriber_that_falls_behind_is_bounded() -> None:
    router = StreamRouter(broker=MemoryBroker(history=10))
    release = anyio.Event()
    seen: list[int] = []

    @router.subscriber("ticks", broadcast=True)
    async def slow(n: Annotated[int, Body()]) -> None:
        seen.append(n)
        await release.wait()

    async with running(app_with(router)):
        await router.publish("ticks", 0)
        await until(lambda: seen == [0])
        for n in range(1, 101):  # 100 more while the handler is stuck on the first
            await router.publish("ticks", n)
        release.set()
        await until(lambda: seen[-1:] == [100])
    assert seen == [0, *range(91, 101)]  # what fell out of the history was skipped


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda r: r.subscriber("a", broadcast=True, group="g"), UsageError),
        (lambda r: r.subscriber("a.{x", max_retries=1), ValueError),
        (lambda r: r.subscriber("a", max_retries=-1), ValueError),
        (lambda r: r.publisher("a.{x}"), ValueError),
        (lambda r: StreamRouter(drain_timeout=-1), ValueError),
    ],
)
def test_misuse_is_refused_with_a_reason(
    call: Callable[[StreamRouter], Any], error: type[Exception]
) -> None:
    with pytest.raises(error, match=r".{20,}"):
        call(StreamRouter())


# -- health, HTTP and a real server ----------------------------------------------------------


def test_health_answers_204_while_the_broker_runs_else_503() -> None:
    router = StreamRouter(health_path="/health")
    app = app_with(router)
    with TestClient(app) as client:
        assert client.get("/health").status_code == 204
    response = TestClient(app).get("/health")  # lifespan not running: broker stopped
    assert response.status_code == 503
    assert "MemoryBroker.ping() answered False" in response.json()["detail"]


def test_health_reports_a_broker_whose_ping_raises() -> None:
    class Broken(MemoryBroker):
        async def ping(self) -> bool:
            raise OSError("socket closed")

    router = StreamRouter(broker=Broken(), health_path="/healthz")
    with TestClient(app_with(router)) as client:
        response = client.get("/healthz")
    assert response.status_code == 503 and "socket closed" in response.json()["detail"]


def test_stream_router_serves_http_and_messages_over_a_real_server() -> None:
    router = StreamRouter(health_path="/health", prefix="/api")
    got: list[Order] = []

    @router.post("/orders", status_code=202)
    async def create(order: Order) -> dict[str, str]:
        return {"id": await router.publish("orders", order)}

    @router.subscriber("orders")
    async def handle(order: Order) -> None:
        got.append(order)

    with serve(app_with(router)) as server:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            assert client.get("/api/health").status_code == 204
            response = client.post("/api/orders", json={"id": 9, "qty": 3})
            assert response.status_code == 202 and response.json()["id"]
            deadline = time.monotonic() + 5
            while got != [Order(id=9, qty=3)] and time.monotonic() < deadline:
                time.sleep(0.01)
    assert got == [Order(id=9, qty=3)]


def test_mount_runs_the_sub_app_lifespan_and_serves_it() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        events.append("start")
        yield {"greeting": "hi"}
        events.append("stop")

    sub = FastAPI(lifespan=lifespan)

    @sub.get("/hello")
    async def hello() -> dict[str, str]:
        return {"ok": "yes"}

    router = StreamRouter()
    router.mount("/sub", sub, name="sub")
    app = app_with(router)
    with TestClient(app) as client:
        assert events == ["start"]
        assert client.get("/sub/hello").json() == {"ok": "yes"}
    assert events == ["start", "stop"]
    assert [m.path for m in router.mounts] == ["/sub"]


def test_the_router_own_lifespan_and_on_startup_run_once() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        events.append("own startup")
        yield {"pool": "ready"}
        events.append("own shutdown")

    router = StreamRouter(lifespan=own, on_startup=[lambda: events.append("on_startup")])
    router.before_startup(lambda: events.append("before_startup"))

    @router.get("/pool")
    async def pool(request: Request) -> str:
        return str(request.state.pool)

    with TestClient(app_with(router)) as client:
        assert client.get("/pool").json() == "ready"  # its state reaches requests
    # a plain APIRouter's on_startup runs twice after include_router in FastAPI 0.165
    assert events == ["on_startup", "own startup", "before_startup", "own shutdown"]


async def test_an_unreachable_redis_fails_startup_with_the_reason() -> None:
    from fastapi_streamkit.brokers.redis import RedisBroker

    router = StreamRouter(broker=RedisBroker(f"redis://127.0.0.1:{free_port()}/0"))
    reply, raised = await startup_reply(app_with(router))
    assert reply["type"] == "lifespan.startup.failed"
    assert "cannot reach Redis" in reply["message"] and raised is not None


async def test_a_sync_handler_is_waited_for_even_past_the_drain_timeout() -> None:
    router = StreamRouter(drain_timeout=0.05)
    started, finished = threading.Event(), threading.Event()

    @router.subscriber("sync")
    def blocking(request: StreamMessage) -> None:  # runs in a worker thread
        started.set()
        time.sleep(0.3)
        finished.set()

    async with running(app_with(router)):
        await router.publish("sync", b"")
        with anyio.fail_after(5):
            while not started.is_set():  # noqa: ASYNC110 - a thread sets it
                await anyio.sleep(0.005)
    assert finished.is_set()  # a thread cannot be cancelled: shutdown waited for it


def test_a_mount_added_after_requests_were_served_is_routed() -> None:
    router = StreamRouter(health_path="/health")
    app = app_with(router)
    client = TestClient(app)
    assert client.get("/late/hello").status_code == 404  # FastAPI caches the routes now
    late = FastAPI()

    @late.get("/hello")
    async def hello() -> str:
        return "hi"

    router.mount("/late", late)
    assert client.get("/late/hello").json() == "hi"
