"""One behaviour suite for every broker: DESIGN.md "Brokers", run on MemoryBroker and Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from fastapi_streamkit.brokers import Broker, MemoryBroker, Message
from fastapi_streamkit.brokers.redis import RedisBroker
from tests._asgi import take

from ._redis import redis_broker_factory

pytestmark = pytest.mark.anyio

Factory = Callable[..., Awaitable[Any]]


@pytest.fixture(params=["memory", "redis"])
async def make_broker(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Build started brokers of one kind (all sharing one store), closed after the test."""
    started: list[Any] = []
    if request.param == "memory":
        shared: dict[str, MemoryBroker] = {}

        async def make(**options: Any) -> Any:
            # Two "workers" of the embedded broker are two handles on the same instance.
            if "one" not in shared:
                shared["one"] = MemoryBroker(**options)
            broker = shared["one"]
            await broker.start()
            started.append(broker)
            return broker

        yield make
    else:
        async with redis_broker_factory(request) as make_redis:

            async def make(**options: Any) -> Any:
                broker = make_redis(**options)
                await broker.start()
                started.append(broker)
                return broker

            yield make
    for broker in started:
        await broker.close()


async def nothing_within(sub: AsyncIterator[Message], seconds: float) -> None:
    """Assert that ``sub`` delivers no message for ``seconds``."""
    with anyio.move_on_after(seconds):
        message = await anext(sub)
        pytest.fail(f"expected no message, got {message!r}")


def _both_are_brokers(memory: MemoryBroker, redis: RedisBroker) -> tuple[Broker, Broker]:
    return memory, redis  # mypy checks that both implement the protocol


async def test_is_a_broker(make_broker: Factory) -> None:
    broker = await make_broker()
    assert isinstance(broker, Broker)
    assert await broker.ping() is True


async def test_broadcast_reaches_every_subscriber_in_order(make_broker: Factory) -> None:
    one, two = await make_broker(), await make_broker()
    sub_a, sub_b = one.subscribe("news"), two.subscribe("news")
    ids = [await one.publish("news", f"m{i}".encode(), headers={"n": str(i)}) for i in range(5)]
    for sub in (sub_a, sub_b):
        got = await take(sub, 5)
        assert [m.id for m in got] == ids
        assert [m.body for m in got] == [f"m{i}".encode() for i in range(5)]
        assert [m.headers for m in got] == [{"n": str(i)} for i in range(5)]
        assert {(m.topic, m.group, m.attempt) for m in got} == {("news", None, 1)}


async def test_broadcast_without_last_id_gets_only_new_messages(make_broker: Factory) -> None:
    broker = await make_broker()
    await broker.publish("news", b"old")
    sub = broker.subscribe("news")
    await broker.publish("news", b"new")
    assert [m.body for m in await take(sub, 1)] == [b"new"]


async def test_last_id_resumes_after_it_without_duplicates(make_broker: Factory) -> None:
    one, two = await make_broker(), await make_broker()
    ids = [await one.publish("feed", str(i).encode()) for i in range(6)]
    resumed = two.subscribe("feed", last_id=ids[2])
    got = await take(resumed, 3)
    assert [m.id for m in got] == ids[3:]
    await nothing_within(resumed, 0.3)


@pytest.mark.parametrize("bad", ["garbage", "", "1-2-3", "-5", "99999999999999999999999-0", "é"])
async def test_malformed_last_id_means_only_new(make_broker: Factory, bad: str) -> None:
    broker = await make_broker()
    await broker.publish("feed", b"before")
    sub = broker.subscribe("feed", last_id=bad)
    await broker.publish("feed", b"after")
    assert [m.body for m in await take(sub, 1)] == [b"after"]


async def test_last_id_older_than_history_starts_at_oldest_retained(make_broker: Factory) -> None:
    broker = await make_broker()
    ids = [await broker.publish("feed", str(i).encode()) for i in range(4)]
    got = await take(broker.subscribe("feed", last_id="0-1"), 4)
    assert [m.id for m in got] == ids


async def test_group_shares_messages_once(make_broker: Factory) -> None:
    one, two = await make_broker(), await make_broker()
    sub_a = one.subscribe("jobs", group="workers")
    sub_b = two.subscribe("jobs", group="workers")
    ids = {await one.publish("jobs", str(i).encode()) for i in range(20)}
    seen: list[Message] = []
    all_seen = anyio.Event()

    async def consume(broker: Any, sub: AsyncIterator[Message]) -> None:
        async for message in sub:
            seen.append(message)
            if len(seen) >= 20:
                all_seen.set()
            await broker.ack(message)
            await anyio.sleep(0.001)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, one, sub_a)
            tg.start_soon(consume, two, sub_b)
            await all_seen.wait()
            await anyio.sleep(0.3)  # a duplicate would arrive now
            tg.cancel_scope.cancel()
    assert sorted(m.id for m in seen) == sorted(ids)
    assert {(m.group, m.attempt) for m in seen} == {("workers", 1)}


async def test_unacked_group_message_is_redelivered(make_broker: Factory) -> None:
    one, two = await make_broker(claim_idle=0.3), await make_broker(claim_idle=0.3)
    dead = one.subscribe("jobs", group="g")
    message_id = await one.publish("jobs", b"work")
    [first] = await take(dead, 1)
    assert (first.id, first.attempt, first.group) == (message_id, 1, "g")
    await dead.aclose()  # its consumer died without acking
    alive = two.subscribe("jobs", group="g")
    [again] = await take(alive, 1, within=5)
    assert (again.id, again.body, again.attempt, again.group) == (message_id, b"work", 2, "g")
    await two.ack(again)
    await nothing_within(alive, 0.8)


async def test_acked_group_message_is_not_redelivered(make_broker: Factory) -> None:
    broker = await make_broker(claim_idle=0.2)
    sub = broker.subscribe("jobs", group="g")
    await broker.publish("jobs", b"once")
    [message] = await take(sub, 1)
    await broker.ack(message)
    await nothing_within(sub, 0.7)


async def test_groups_are_independent_of_each_other_and_of_broadcast(
    make_broker: Factory,
) -> None:
    broker = await make_broker()
    subs = [
        broker.subscribe("t", group="a"),
        broker.subscribe("t", group="b"),
        broker.subscribe("t"),
    ]
    message_id = await broker.publish("t", b"x")
    for sub, group in zip(subs, ["a", "b", None], strict=True):
        [message] = await take(sub, 1)
        assert (message.id, message.group) == (message_id, group)


async def test_pattern_subscriber_gets_matching_topics(make_broker: Factory) -> None:
    broker = await make_broker()
    sub = broker.subscribe("orders.{region}")
    await anyio.sleep(0.1)
    await broker.publish("orders.eu.extra", b"no: two segments")
    await broker.publish("shipping.eu", b"no: other topic")
    await broker.publish("orders.eu", b"eu")
    got = await take(sub, 1)
    await broker.publish("orders.us", b"us")  # a topic that did not exist when subscribing
    got += await take(sub, 1, within=5)
    assert [(m.topic, m.body) for m in got] == [("orders.eu", b"eu"), ("orders.us", b"us")]
    await nothing_within(sub, 0.3)


async def test_pattern_group_shares_across_topics(make_broker: Factory) -> None:
    broker = await make_broker()
    sub = broker.subscribe("orders.{region}", group="billing")
    await anyio.sleep(0.1)
    await broker.publish("orders.eu", b"1")
    await broker.publish("orders.us", b"2")
    got = await take(sub, 2, within=5)
    assert sorted((m.topic, m.body, m.group) for m in got) == [
        ("orders.eu", b"1", "billing"),
        ("orders.us", b"2", "billing"),
    ]


async def test_close_is_idempotent_and_ends_subscriptions(make_broker: Factory) -> None:
    broker = await make_broker()
    await broker.start()  # a second start does nothing
    sub = broker.subscribe("t")
    received: list[Message] = []

    async def drain() -> None:
        async for message in sub:
            received.append(message)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drain)
            await anyio.sleep(0.05)
            await broker.close()
            await broker.close()
    assert received == []
    assert await broker.ping() is False


async def test_publish_returns_increasing_ids(make_broker: Factory) -> None:
    broker = await make_broker()
    ids = [await broker.publish("t", b"") for _ in range(50)]
    keys = [tuple(int(part) for part in i.split("-")) for i in ids]
    assert keys == sorted(keys) and len(set(keys)) == 50


@pytest.mark.parametrize("group", [None, "g"])
async def test_consumer_task_cancelled_at_any_moment_ends_promptly(
    make_broker: Factory, group: str | None
) -> None:
    # Regression: with redis-py's default socket_timeout, a plain asyncio cancel landing just
    # after a message was yielded was swallowed (Python 3.11 asyncio.wait_for) and the task
    # kept running. anyio cancel scopes retry their cancellation, so this uses asyncio's own.
    broker = await make_broker()
    for steps in range(6):
        sub = broker.subscribe(f"cancel{steps}", group=group)
        got = asyncio.Event()

        async def consume(sub: AsyncIterator[Message] = sub, got: asyncio.Event = got) -> None:
            async for _ in sub:
                got.set()

        task = asyncio.get_running_loop().create_task(consume())
        await asyncio.sleep(0.05)
        await broker.publish(f"cancel{steps}", b"x")
        await asyncio.wait_for(got.wait(), 5)
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=3)
        assert done == {task}, f"the consumer task ignored its cancellation ({steps=})"
