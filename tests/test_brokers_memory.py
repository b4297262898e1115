"""MemoryBroker specifics: the bounded-history policy, lifecycle errors, topic patterns, ids."""

from __future__ import annotations

import logging

import anyio
import pytest

from fastapi_streamkit.brokers import MemoryBroker, Message
from fastapi_streamkit.brokers._topics import IdClock, TopicPattern, parse_id
from fastapi_streamkit.exceptions import BrokerNotRunning, StreamkitError

pytestmark = pytest.mark.anyio


async def test_slow_broadcast_subscriber_skips_to_oldest_retained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker(history=10)
    await broker.start()
    slow = broker.subscribe("feed")
    ids = [await broker.publish("feed", str(i).encode()) for i in range(10_000)]
    with caplog.at_level(logging.WARNING, "fastapi_streamkit.brokers"):
        with anyio.fail_after(5):
            got = [await anext(slow) for _ in range(10)]
    # The subscriber held no backlog: it gets the 10 retained messages, then nothing more.
    assert [m.id for m in got] == ids[-10:]
    assert "fell behind its history of 10 messages" in caplog.text
    with anyio.move_on_after(0.1):
        pytest.fail(f"unexpected {await anext(slow)!r}")
    await broker.close()


async def test_group_that_falls_behind_skips_trimmed_messages() -> None:
    broker = MemoryBroker(history=3)
    await broker.start()
    sub = broker.subscribe("jobs", group="g")
    ids = [await broker.publish("jobs", b"x") for _ in range(8)]
    with anyio.fail_after(5):
        got = [await anext(sub) for _ in range(3)]
    assert [m.id for m in got] == ids[-3:]
    await broker.close()


async def test_pending_group_message_survives_trimming() -> None:
    broker = MemoryBroker(history=2, claim_idle=0.1)
    await broker.start()
    sub = broker.subscribe("jobs", group="g")
    first_id = await broker.publish("jobs", b"first")
    with anyio.fail_after(5):
        first = await anext(sub)
        for _ in range(5):
            await broker.publish("jobs", b"later")
        await anyio.sleep(0.15)
        again = await anext(sub)  # the claim comes before newer messages
    assert (first.id, again.id, again.attempt) == (first_id, first_id, 2)
    await broker.close()


async def test_lifecycle_errors_and_restart() -> None:
    broker = MemoryBroker()
    with pytest.raises(BrokerNotRunning, match=r"await broker.start\(\)"):
        await broker.publish("t", b"x")
    with pytest.raises(StreamkitError):
        broker.subscribe("t")
    assert await broker.ping() is False
    await broker.start()
    old = broker.subscribe("t")
    first = await broker.publish("t", b"kept")
    await broker.close()
    with pytest.raises(StopAsyncIteration):
        await anext(old)
    await broker.start()  # a second lifespan cycle: history survives, old subscriptions don't
    with anyio.fail_after(5):
        message: Message = await anext(broker.subscribe("t", last_id="0"))
    assert message.id == first
    await broker.close()


@pytest.mark.parametrize(
    ("topic", "body", "headers", "error"),
    [
        ("t", "text", None, TypeError),
        ("t", b"x", {"n": 1}, TypeError),
        ("orders.{region}", b"x", None, ValueError),
        ("", b"x", None, ValueError),
    ],
)
async def test_publish_rejects_bad_arguments(
    topic: str, body: object, headers: object, error: type[Exception]
) -> None:
    broker = MemoryBroker()
    await broker.start()
    with pytest.raises(error):
        await broker.publish(topic, body, headers=headers)  # type: ignore[arg-type]


async def test_body_may_be_bytearray_or_memoryview() -> None:
    broker = MemoryBroker()
    await broker.start()
    sub = broker.subscribe("t")
    await broker.publish("t", bytearray(b"ab"))  # type: ignore[arg-type]
    await broker.publish("t", memoryview(b"cd"))  # type: ignore[arg-type]
    with anyio.fail_after(5):
        assert [(await anext(sub)).body for _ in range(2)] == [b"ab", b"cd"]


@pytest.mark.parametrize("options", [{"history": 0}, {"claim_idle": 0}, {"claim_idle": -1.0}])
def test_options_are_checked(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        MemoryBroker(**options)  # type: ignore[arg-type]


async def test_aclose_ends_one_subscription_only() -> None:
    broker = MemoryBroker()
    await broker.start()
    closed, open_ = broker.subscribe("t"), broker.subscribe("t")
    await closed.aclose()
    await broker.publish("t", b"x")
    with anyio.fail_after(5):
        assert (await anext(open_)).body == b"x"
    with pytest.raises(StopAsyncIteration):
        await anext(closed)


@pytest.mark.parametrize(
    ("pattern", "topic", "params"),
    [
        ("orders", "orders", {}),
        ("orders", "orders.eu", None),
        ("orders.{region}", "orders.eu", {"region": "eu"}),
        ("orders.{region}", "orders.eu.x", None),
        ("orders.{region}", "orders.", None),
        ("{kind}.{region}.new", "orders.eu.new", {"kind": "orders", "region": "eu"}),
        ("a+b.{x}", "a+b.1", {"x": "1"}),
        ("a+b.{x}", "aab.1", None),
    ],
)
def test_topic_pattern(pattern: str, topic: str, params: dict[str, str] | None) -> None:
    compiled = TopicPattern(pattern)
    assert compiled.match(topic) == params
    assert compiled.matches(topic) is (params is not None)


@pytest.mark.parametrize("bad", ["", "orders.{", "orders.{1x}", "a.{x}.{x}", "x}"])
def test_topic_pattern_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        TopicPattern(bad)


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("1-2", (1, 2)),
        ("17", (17, 0)),
        (b"5-0", (5, 0)),
        (" 3-4 ", (3, 4)),
        (None, None),
        ("x", None),
        ("1-", None),
        ("-1", None),
        ("1-2-3", None),
        (str(2**64) + "-0", None),
        (b"\xff", None),
    ],
)
def test_parse_id(value: str | bytes | None, parsed: tuple[int, int] | None) -> None:
    assert parse_id(value) == parsed


def test_id_clock_never_goes_back() -> None:
    clock = IdClock()
    clock.last = (2**50, 7)  # a clock far in the future, as after a wall-clock step back
    assert clock.next() == (2**50, 8)
    assert clock.next() == (2**50, 9)


def test_messages_are_hashable_values() -> None:
    one = Message("1-0", "t", b"x", {"k": "v"}, "g", 2)
    assert one == Message("1-0", "t", b"x", {"k": "v"}, "g", 2)
    assert len({one, Message("1-0", "t", b"x", {"k": "v"}, "g", 2)}) == 1
    assert one != Message("1-0", "t", b"x", {"k": "other"}, "g", 2)
