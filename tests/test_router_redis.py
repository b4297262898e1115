"""StreamRouter over a real Redis: handlers, publishers, dead letters, workers in a group."""

import contextlib
from typing import Annotated, Any

import anyio
import pytest
from fastapi import Body, FastAPI

from fastapi_streamkit import StreamRouter
from fastapi_streamkit.testing import TestStreamApp

from ._redis import redis_broker_factory

pytestmark = pytest.mark.anyio


def app_with(router: StreamRouter) -> FastAPI:
    app = FastAPI()
    app.include_router(router)
    return app


async def test_handler_publisher_and_dead_letter_over_redis() -> None:
    async with redis_broker_factory() as make:
        router = StreamRouter(broker=make(), health_path="/health")

        @router.subscriber("orders.{region}", max_retries=1)
        @router.publisher("shipped")
        async def ship(order: Annotated[dict[str, Any], Body()], region: str) -> dict[str, Any]:
            if order.get("fail"):
                raise RuntimeError("carrier down")
            return {**order, "region": region}

        async with TestStreamApp(app_with(router), timeout=10) as stream:
            handled = await stream.publish_and_wait("orders.eu", {"id": 1})
            assert handled.result == {"id": 1, "region": "eu"}
            assert handled.message.group is not None and handled.message.attempt == 1
            assert [(m.topic, m.body) for m in handled.published] == [
                ("shipped", b'{"id":1,"region":"eu"}')
            ]
            failed = await stream.publish_and_wait("orders.us", {"id": 2, "fail": True})
            assert failed.attempts == 2
            assert failed.dead_letter is not None and failed.dead_letter.topic == "orders.us.dlq"
            redelivered = []
            async with anyio.create_task_group() as tg:  # the DLQ is a real Redis stream

                async def read() -> None:
                    async for message in router.broker.subscribe("orders.us.dlq", last_id="0"):
                        redelivered.append(message)
                        tg.cancel_scope.cancel()

                tg.start_soon(read)
                with anyio.fail_after(10):
                    await anyio.sleep_forever()
            assert redelivered[0].body == b'{"id":2,"fail":true}'
            assert "carrier down" in redelivered[0].headers["x-error"]


async def test_two_workers_share_a_group_over_redis() -> None:
    async with redis_broker_factory() as make:
        seen: list[tuple[int, int]] = []

        def worker(index: int) -> FastAPI:
            router = StreamRouter(broker=make())

            async def handle(n: Annotated[int, Body()]) -> None:
                seen.append((index, n))

            handle.__qualname__ = "handle"  # the same handler in two processes
            router.subscriber("jobs")(handle)
            return app_with(router)

        async with contextlib.AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(TestStreamApp(worker(i), timeout=10))
                for i in range(2)
            ]
            for n in range(20):
                await streams[0].publish("jobs", n)
            with anyio.fail_after(10):
                while len(seen) < 20:  # noqa: ASYNC110 - bounded poll of two apps
                    await anyio.sleep(0.01)
            await anyio.sleep(0.1)
        assert sorted(n for _, n in seen) == list(range(20))
