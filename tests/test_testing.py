"""TestStreamApp: publish, await the handling, its outputs and dead letters, bounded."""

import json
import time
from typing import Annotated, Any

import anyio
import pytest
from fastapi import Body, Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from pydantic import BaseModel

from fastapi_streamkit import MemoryBroker, StreamRouter
from fastapi_streamkit.exceptions import StreamkitError, UsageError
from fastapi_streamkit.testing import Handled, TestStreamApp

pytestmark = pytest.mark.anyio


class Order(BaseModel):
    id: int


def tax_rate() -> float:
    return 0.2


def build() -> tuple[FastAPI, StreamRouter, list[str]]:
    router = StreamRouter()
    events: list[str] = []

    @router.after_startup
    def started() -> None:
        events.append("after_startup")

    @router.subscriber("orders")
    @router.publisher("orders.priced")
    async def price(order: Order, rate: Annotated[float, Depends(tax_rate)]) -> dict[str, Any]:
        return {"id": order.id, "tax": rate}

    @router.subscriber("orders.priced")
    async def ship(body: Annotated[dict[str, Any], Body()]) -> str:
        return f"shipped {body['id']}"

    @router.subscriber("fails", max_retries=2)
    async def fails(order: Order) -> None:
        raise HTTPException(409, "duplicate")

    @router.subscriber("news", broadcast=True)
    @router.subscriber("news", group="audit")
    async def news() -> str:
        return "seen"

    app = FastAPI()
    app.include_router(router)
    return app, router, events


async def test_publish_and_wait_returns_the_result_and_the_published_outputs() -> None:
    app, router, events = build()
    async with TestStreamApp(app) as stream:
        assert events == ["after_startup"]
        handled = await stream.publish_and_wait("orders", {"id": 4})
        assert isinstance(handled, Handled)
        assert handled.result == {"id": 4, "tax": 0.2}
        assert handled.error is None and handled.dead_letter is None
        assert handled.attempts == 1
        assert [(m.topic, m.body) for m in handled.published] == [
            ("orders.priced", b'{"id":4,"tax":0.2}')
        ]
        shipped = await stream.wait_handled("orders.priced")  # the output was handled too
        assert shipped.result == "shipped 4"
        assert shipped.message.id == handled.published[0].id
        assert [h.subscriber.name.rsplit(".", 1)[-1] for h in stream.handled] == ["price", "ship"]


async def test_dead_letters_are_returned_with_the_error() -> None:
    app, _, _ = build()
    async with TestStreamApp(app) as stream:
        handled = await stream.publish_and_wait("fails", {"id": 1}, headers={"x-req": "9"})
        assert handled.attempts == 3
        assert isinstance(handled.error, HTTPException)
        dead = handled.dead_letter
        assert dead is not None and dead.topic == "fails.dlq" and dead.body == b'{"id":1}'
        assert dead.headers["x-req"] == "9"
        assert json.loads(dead.headers["x-error"]) == {
            "type": "HTTPException",
            "message": "409: duplicate",
        }
        invalid = await stream.publish_and_wait("orders", {"id": "x"})
        assert invalid.attempts == 1 and invalid.dead_letter is not None
        assert json.loads(invalid.dead_letter.headers["x-error"])["errors"][0]["loc"] == [
            "body",
            "id",
        ]


async def test_publish_and_wait_all_for_several_subscribers() -> None:
    app, _, _ = build()
    async with TestStreamApp(app) as stream:
        with pytest.raises(UsageError, match="exactly one matching subscriber, found 2"):
            await stream.publish_and_wait("news", b"")
        both = await stream.publish_and_wait_all("news", b"")
        assert [h.subscriber.group for h in both] == ["audit", None]
        assert {h.message.id for h in both} == {both[0].message.id}


async def test_waits_are_bounded_and_say_what_was_awaited() -> None:
    app, _, _ = build()
    async with TestStreamApp(app, timeout=0.1) as stream:
        await stream.publish_and_wait("orders", {"id": 1})
        with anyio.fail_after(2), pytest.raises(TimeoutError) as info:
            await stream.wait_handled("nobody.publishes.this")
        assert "'nobody.publishes.this'" in str(info.value)
        assert "price<-orders" in str(info.value)  # what was handled so far
        with pytest.raises(TimeoutError, match="a handled message that passes"):
            await stream.wait_handled(lambda h: h.result == "never", timeout=0.05)


async def test_unknown_topics_and_apps_without_a_stream_router_are_refused() -> None:
    app, _, _ = build()
    async with TestStreamApp(app) as stream:
        with pytest.raises(UsageError, match="subscribed topics: orders, orders.priced"):
            await stream.publish_and_wait_all("nothing", b"")
        await stream.publish("nothing", b"")  # plain publishing is fine
    with pytest.raises(UsageError, match="include one first"):
        async with TestStreamApp(FastAPI()):
            pass


async def test_without_lifespan_handlers_are_called_directly_with_overrides() -> None:
    app, router, events = build()
    app.dependency_overrides[tax_rate] = lambda: 0.5
    async with TestStreamApp(app, lifespan=False) as stream:
        handled = await stream.publish_and_wait("orders", {"id": 2})
        assert handled.result == {"id": 2, "tax": 0.5}
        assert handled.published[0].topic == "orders.priced"
        failed = await stream.publish_and_wait("fails", {"id": 2})
        assert failed.attempts == 3 and failed.dead_letter is not None
        message_id = await stream.publish("orders", {"id": 3})
        assert stream.handled[-1].message.id == message_id
    assert events == []  # nothing was started
    assert not await router.broker.ping()


async def test_with_lifespan_overrides_are_honoured_too() -> None:
    app, _, _ = build()
    app.dependency_overrides[tax_rate] = lambda: 0.1
    async with TestStreamApp(app) as stream:
        assert (await stream.publish_and_wait("orders", {"id": 1})).result["tax"] == 0.1


async def test_a_failing_startup_is_raised_on_entry() -> None:
    class Down(MemoryBroker):
        async def start(self) -> None:
            raise ConnectionRefusedError("broker down")

    router = StreamRouter(broker=Down())
    app = FastAPI()
    app.include_router(router)
    with pytest.raises(StreamkitError, match="broker down"):
        async with TestStreamApp(app):
            pass


async def test_a_second_entry_runs_a_fresh_cycle() -> None:
    app, _, events = build()
    for _ in range(2):
        async with TestStreamApp(app) as stream:
            assert (await stream.publish_and_wait("orders", {"id": 5})).attempts == 1
    assert events == ["after_startup", "after_startup"]


def test_a_sync_test_can_publish_through_the_test_client_portal() -> None:
    app, router, _ = build()
    shipped: list[Handled] = []
    router._observers.append(shipped.append)  # what TestStreamApp listens to
    try:
        with TestClient(app) as client:
            assert client.portal is not None
            client.portal.call(router.publish, "orders", {"id": 8})
            deadline = time.monotonic() + 5
            while len(shipped) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        router._observers.remove(shipped.append)
    assert [h.result for h in shipped] == [{"id": 8, "tax": 0.2}, "shipped 8"]
