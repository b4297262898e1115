"""RedisBroker specifics: foreign entries, dead consumers, restarts, reconnects, SSE resume."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis
from fastapi import FastAPI

from fastapi_streamkit import RedisBroker
from fastapi_streamkit.brokers import Message
from fastapi_streamkit.exceptions import BrokerNotRunning, BrokerUnavailable
from fastapi_streamkit.sse import EventStream, LastEventID
from tests._asgi import take

from ._redis import REDIS_URL, private_redis, redis_broker_factory, unique_prefix
from ._server import free_port, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., Any]]:
    """``await make(**options)``: a started RedisBroker on this test's own prefix."""
    brokers: list[RedisBroker] = []
    async with redis_broker_factory() as factory:

        async def started(**options: Any) -> RedisBroker:
            broker: RedisBroker = factory(**options)
            await broker.start()
            brokers.append(broker)
            return broker

        yield started
        for broker in brokers:
            await broker.close()


async def test_start_fails_clearly_when_redis_is_unreachable() -> None:
    broker = RedisBroker(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(BrokerUnavailable, match="cannot reach Redis"):
        await broker.start()
    assert await broker.ping() is False
    with pytest.raises(BrokerNotRunning):
        await broker.publish("t", b"x")


async def test_foreign_entry_goes_to_dlq_and_the_loop_goes_on(make: Callable[..., Any]) -> None:
    broker = await make()
    group, fan = broker.subscribe("orders", group="g"), broker.subscribe("orders")
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    key = broker.prefix + "orders"
    bad_ids = [
        await client.xadd(key, {"payload": "no body field"}),
        await client.xadd(key, {"body": "x", "h:bad": b"\xff\xfe"}),
    ]
    good_id = await broker.publish("orders", b"fine", headers={"k": "v"})
    [message] = await take(group, 1)
    assert (message.id, message.body, message.headers) == (good_id, b"fine", {"k": "v"})
    [broadcast] = await take(fan, 1)  # a broadcast subscriber skips foreign entries too
    assert broadcast.id == good_id
    dlq = broker.subscribe("orders.dlq", last_id="0")
    dead = await take(dlq, 2)
    assert [d.headers["x-original-id"] for d in dead] == [
        i.decode() for i in bad_ids if isinstance(i, bytes)
    ]
    errors = [json.loads(d.headers["x-error"]) for d in dead]
    assert errors[0] == {"type": "MalformedEntry", "message": errors[0]["message"]}
    assert "no 'body' field" in errors[0]["message"]
    assert "not UTF-8" in errors[1]["message"]
    assert dead[1].body == b"x"
    pending = await client.xpending(key, "g")
    assert pending["pending"] == 1  # only the good message, not yet acked
    await client.aclose()


_DYING_CONSUMER = """
import anyio, sys
from fastapi_streamkit import RedisBroker

async def main():
    broker = RedisBroker(sys.argv[1], prefix=sys.argv[2], claim_idle=1.0)
    await broker.start()
    sub = broker.subscribe("jobs", group="workers", last_id="0")
    message = await anext(sub)
    print(message.id, flush=True)
    await anyio.sleep(60)  # killed here, before acking

anyio.run(main)
"""


async def test_message_of_a_killed_consumer_is_redelivered(
    make: Callable[..., Any], tmp_path: Path
) -> None:
    survivor = await make(claim_idle=1.0)
    script = tmp_path / "consumer.py"
    script.write_text(textwrap.dedent(_DYING_CONSUMER))
    message_id = await survivor.publish("jobs", b"work")
    proc = subprocess.Popen(
        [sys.executable, str(script), REDIS_URL, survivor.prefix], stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        with anyio.fail_after(15):
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert line.decode().strip() == message_id
    finally:
        proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
    killed_at = time.monotonic()
    sub = survivor.subscribe("jobs", group="workers")
    [again] = await take(sub, 1, within=5)
    assert (again.id, again.body, again.attempt) == (message_id, b"work", 2)
    assert time.monotonic() - killed_at < 1.0 + 1.5  # claim_idle plus one claim interval
    await survivor.ack(again)


async def test_pattern_subscriber_discovers_new_topics_within_a_second(
    make: Callable[..., Any],
) -> None:
    worker_a, worker_b = await make(), await make()
    sub = worker_a.subscribe("sensors.{room}")
    await anyio.sleep(0.6)  # let the subscriber settle on the (empty) registry
    sent = time.monotonic()
    await worker_b.publish("sensors.kitchen", b"21.5")
    [message] = await take(sub, 1, within=3)
    assert (message.topic, message.body) == ("sensors.kitchen", b"21.5")
    assert time.monotonic() - sent < 1.0


async def test_history_is_bounded(make: Callable[..., Any]) -> None:
    broker = await make(history=100)
    for _ in range(1000):
        await broker.publish("t", b"x")
    async with redis.asyncio.Redis.from_url(REDIS_URL) as client:
        length = await client.xlen(broker.prefix + "t")
    assert 100 <= length < 300  # MAXLEN ~ trims whole nodes (100 entries each by default)


async def test_ping_follows_the_real_connection(tmp_path: Path) -> None:
    with private_redis(tmp_path) as server:
        broker = RedisBroker(server.url, prefix=unique_prefix())
        await broker.start()
        assert await broker.ping() is True
        await anyio.to_thread.run_sync(lambda: server.stop(save=False))
        assert await broker.ping() is False
        with pytest.raises(BrokerUnavailable, match="publish again later"):
            await broker.publish("t", b"x")
        await anyio.to_thread.run_sync(server.start)
        assert await _until_async(broker.ping, within=5) < 5
        await broker.close()


class _Load:
    """A publisher and a group consumer running against one broker, keeping the record."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker
        self.published: list[str] = []
        self.acked: list[str] = []
        self.seen: list[Message] = []
        self.hold: Message | None = None  # delivered, never acked before the restart

    async def publish_forever(self) -> None:
        n = 0
        while True:
            try:
                self.published.append(await self.broker.publish("jobs", str(n).encode()))
                n += 1
            except BrokerUnavailable:
                pass
            await anyio.sleep(0.005)

    async def consume_forever(self) -> None:
        async for message in self.broker.subscribe("jobs", group="g", last_id="0"):
            self.seen.append(message)
            if self.hold is None:
                self.hold = message  # simulate a handler that never finished
                continue
            await self.broker.ack(message)
            self.acked.append(message.id)


async def _until(condition: Callable[[], bool], within: float) -> float:
    async def check() -> bool:
        return condition()

    return await _until_async(check, within)


async def _until_async(condition: Callable[[], Awaitable[bool]], within: float) -> float:
    """Poll ``condition`` (external state: no event to wait on) until true; its delay."""
    started = time.monotonic()
    with anyio.fail_after(within):
        while True:
            if await condition():
                return time.monotonic() - started
            await anyio.sleep(0.02)


@pytest.mark.parametrize("keep_data", [True, False], ids=["restart", "crash-and-data-loss"])
async def test_redis_restarted_under_load(tmp_path: Path, keep_data: bool) -> None:
    with private_redis(tmp_path) as server:
        broker = RedisBroker(server.url, prefix=unique_prefix(), claim_idle=1.0)
        await broker.start()
        load = _Load(broker)
        async with anyio.create_task_group() as tg:
            tg.start_soon(load.publish_forever)
            tg.start_soon(load.consume_forever)
            await _until(lambda: len(load.acked) >= 50, within=10)
            if keep_data:
                await anyio.to_thread.run_sync(_shutdown_saving, server.url)
                server.proc.wait(10)  # type: ignore[union-attr]
                server.proc = None
            else:
                await anyio.to_thread.run_sync(lambda: server.stop(save=False))
            await anyio.sleep(1.0)
            before = (len(load.published), len(load.acked))
            await anyio.to_thread.run_sync(server.start)
            await _until(lambda: len(load.published) > before[0] + 20, within=5)
            await _until(lambda: len(load.acked) > before[1] + 20, within=5)
            if keep_data:  # the unacked message comes back; nothing published is lost
                hold = load.hold
                assert hold is not None
                await _until(lambda: any(m.id == hold.id and m.attempt >= 2 for m in load.seen), 5)
                published = set(load.published)
                await _until(lambda: published <= {m.id for m in load.seen}, within=5)
            tg.cancel_scope.cancel()
        await broker.close()


def _shutdown_saving(url: str) -> None:
    """SHUTDOWN SAVE: snapshot and exit in one step, as a clean restart does."""
    client = redis.Redis.from_url(url)
    try:
        client.shutdown(save=True)
    except redis.ConnectionError:
        pass  # the server closed the connection while exiting
    finally:
        client.close()


def _sse_app(prefix: str) -> FastAPI:
    broker = RedisBroker(REDIS_URL, prefix=prefix)

    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await broker.start()
        yield
        await broker.close()

    app = FastAPI(lifespan=lifespan)  # type: ignore[arg-type]

    @app.get("/events")
    async def events(last_event_id: LastEventID) -> EventStream:
        return EventStream(broker.subscribe("feed", last_id=last_event_id))

    return app


async def _read_events(url: str, count: int, last_id: str | None) -> list[tuple[str, str]]:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    events: list[tuple[str, str]] = []
    event_id = data = ""
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", f"{url}/events", headers=headers) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif line == "" and event_id:
                    events.append((event_id, data))
                    event_id = ""
                    if len(events) == count:
                        return events
    return events


async def test_sse_client_resumes_on_another_worker(make: Callable[..., Any]) -> None:
    publisher = await make()
    app_a, app_b = _sse_app(publisher.prefix), _sse_app(publisher.prefix)
    with serve(app_a) as worker_a, serve(app_b) as worker_b:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                first: list[tuple[str, str]] = []

                async def read_first() -> None:
                    first.extend(await _read_events(worker_a.url, 3, None))

                tg.start_soon(read_first)
                await anyio.sleep(0.5)  # the stream is open and subscribed
                sent = [await publisher.publish("feed", f"e{i}".encode()) for i in range(3)]
            assert first == [(sent[i], f"e{i}") for i in range(3)]
            # Disconnected: three more events happen, then the browser reconnects elsewhere.
            sent += [await publisher.publish("feed", f"e{i}".encode()) for i in range(3, 6)]
            resumed = await _read_events(worker_b.url, 3, first[-1][0])
    assert resumed == [(sent[i], f"e{i}") for i in range(3, 6)]


async def test_slow_consumer_keeps_its_batch_from_being_claimed(make: Callable[..., Any]) -> None:
    slow, other = await make(claim_idle=0.4), await make(claim_idle=0.4)
    mine = slow.subscribe("jobs", group="g")
    theirs = other.subscribe("jobs", group="g")
    ids = [await slow.publish("jobs", str(i).encode()) for i in range(3)]
    stolen: list[Message] = []

    async def watch_other() -> None:
        async for message in theirs:
            stolen.append(message)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_other)
        got = await take(mine, 1)  # one read took all three into the local batch
        for _ in range(2):
            await slow.ack(got[-1])
            await anyio.sleep(0.3)  # a slow handler: the batch outlives claim_idle / 2
            got += await take(mine, 1)
        await slow.ack(got[-1])
        await anyio.sleep(1.0)  # the other consumer claims nothing: the batch was re-owned
        tg.cancel_scope.cancel()
    assert [m.id for m in got] == ids
    assert [m.attempt for m in got] == [1, 1, 1]
    assert stolen == []


async def test_many_broadcast_subscribers_share_one_reader(tmp_path: Path) -> None:
    with private_redis(tmp_path) as server:  # alone on it: CLIENT LIST shows only us
        broker = RedisBroker(server.url, prefix=unique_prefix())
        await broker.start()
        subs = [broker.subscribe("ticks") for _ in range(300)]  # > redis-py's 100 connections
        async with anyio.create_task_group() as tg:
            for sub in subs:
                tg.start_soon(anext, sub)  # every subscriber waits on the topic's tail
            await anyio.sleep(0.3)
            async with redis.asyncio.Redis.from_url(server.url) as client:
                clients = await client.client_list()
            await broker.publish("ticks", b"tick")
        assert len(clients) <= 3  # the tail's XREAD, at most one idle pooled connection, us
        assert [c["cmd"] for c in clients].count("xread") == 1
        second = await broker.publish("ticks", b"tock")
        assert {(await take(sub, 1))[0].id for sub in subs} == {second}
        await broker.close()


async def test_subscriber_behind_the_shared_ring_catches_up_from_redis(
    make: Callable[..., Any],
) -> None:
    broker = await make()
    live, late = broker.subscribe("feed"), broker.subscribe("feed")
    first = await take_after_publish(broker, live, b"0")
    ids = [first] + [await broker.publish("feed", str(i).encode()) for i in range(1, 1500)]
    await take(live, 1499)  # the shared reader's ring (1024) has moved on past `late`
    got = await take(late, 1500, within=10)
    assert [m.id for m in got] == ids
    assert [m.body for m in got] == [str(i).encode() for i in range(1500)]


async def take_after_publish(broker: RedisBroker, sub: AsyncIterator[Message], body: bytes) -> str:
    message_id: str = await broker.publish("feed", body)
    [message] = await take(sub, 1)
    assert message.id == message_id
    return message_id
