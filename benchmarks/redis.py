"""Redis consumer-group throughput, end to end: publish -> trivial handler -> ack.

Side by side in one run, against the same local Redis, N small messages each:
  * ours:       RedisBroker.publish + RedisBroker.subscribe(group=...) + ack
  * raw:        redis-py asyncio XADD / XREADGROUP COUNT 128 / one XACK per batch (the ceiling)
  * faststream: FastStream 0.7 RedisBroker, StreamSub(group=..., max_records=128), no logger
Publisher and consumer run concurrently in one event loop; the clock runs from the first
publish to the N-th handled message. Targets (issue 6): >= 2x FastStream, >= 50% of raw.

Fan-out: one uvicorn process streams `EventStream(broker.subscribe("ticks"))` to --clients
SSE connections (raw sockets in this process); a publisher sends --rate events/s for
--seconds; printed: delivered events/s and publish-to-client latency (p50/p99).

    .venv/bin/python benchmarks/redis.py                    # both, N = 100,000
    .venv/bin/python benchmarks/redis.py --only groups --n 20000
    .venv/bin/python benchmarks/redis.py --only fanout --clients 1000 --rate 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

# This file is named redis.py: keep its directory off sys.path so `import redis` is redis-py.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import redis.asyncio as aioredis  # noqa: E402

from fastapi_streamkit.brokers.redis import RedisBroker  # noqa: E402

BODY = b'{"order": 12345}'


class Handler:
    """The same trivial handler for everyone: look at the body, count, signal the N-th."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.last: object = None
        self.done = asyncio.Event()

    def __call__(self, body: object) -> None:
        self.last = body
        self.count += 1
        if self.count == self.n:
            self.done.set()


async def _timed(publish: Callable[[], Awaitable[object]], handler: Handler, limit: float) -> float:
    started = time.perf_counter()
    for _ in range(handler.n):
        await publish()
    await asyncio.wait_for(handler.done.wait(), limit)
    return time.perf_counter() - started


async def bench_ours(url: str, n: int, prefix: str) -> float:
    broker = RedisBroker(url, prefix=prefix)
    await broker.start()
    handler = Handler(n)
    sub = broker.subscribe("bench", group="g")

    async def consume() -> None:
        async for message in sub:
            handler(message.body)
            await broker.ack(message)

    task = asyncio.create_task(consume())
    try:
        return await _timed(lambda: broker.publish("bench", BODY), handler, 600)
    finally:
        await _stop(task)
        await broker.close()


async def bench_raw(url: str, n: int, prefix: str) -> float:
    client = aioredis.Redis.from_url(url, socket_timeout=None)  # as RedisBroker (see there)
    key = prefix + "bench"
    await client.xgroup_create(key, "g", id="$", mkstream=True)
    handler = Handler(n)

    async def consume() -> None:
        while True:
            reply = await client.xreadgroup("g", "c1", {key: ">"}, count=128, block=1000)
            ids = []
            for _, entries in reply or ():
                for message_id, fields in entries:
                    handler(fields[b"body"])
                    ids.append(message_id)
            if ids:
                await client.xack(key, "g", *ids)

    task = asyncio.create_task(consume())
    try:
        return await _timed(
            lambda: client.xadd(key, {b"body": BODY}, maxlen=10_000, approximate=True),
            handler,
            600,
        )
    finally:
        await _stop(task)
        await client.aclose()


async def bench_faststream(url: str, n: int, prefix: str) -> float:
    from faststream.redis import RedisBroker as FastStreamBroker
    from faststream.redis import StreamSub

    broker = FastStreamBroker(url, logger=None)
    key = prefix + "bench"
    handler = Handler(n)

    @broker.subscriber(stream=StreamSub(key, group="g", consumer="c1", max_records=128))
    async def handle(body: Any) -> None:  # `bytes` would fail: FastStream decodes the JSON
        handler(body)

    await broker.start()
    try:
        return await _timed(lambda: broker.publish(BODY, stream=key), handler, 1200)
    finally:
        await broker.stop()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def _cleanup(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


_SERVER = """
import contextlib, sys, uvicorn
from fastapi import FastAPI
from fastapi_streamkit import EventStream, RedisBroker

broker = RedisBroker(sys.argv[1], prefix=sys.argv[2])

@contextlib.asynccontextmanager
async def lifespan(app):
    await broker.start()
    yield
    await broker.close()

app = FastAPI(lifespan=lifespan)

@app.get("/events")
async def events() -> EventStream:
    return EventStream(broker.subscribe("ticks"), ping_interval=60)

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[3]), log_level="warning")
"""


async def _sse_client(port: int, latencies: list[float], connected: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass  # the response head: the subscription exists from here on
    connected.set()
    try:
        while line := await reader.readline():
            if line.startswith(b"data:"):
                latencies.append(time.time() - float(line[5:]))
    finally:
        writer.close()


async def _connect_all(port: int, clients: int, latencies: list[float]) -> list[asyncio.Task[None]]:
    tasks = []
    for _ in range(clients):
        connected = asyncio.Event()
        tasks.append(asyncio.create_task(_sse_client(port, latencies, connected)))
        await asyncio.wait_for(connected.wait(), 30)
    return tasks


async def bench_fanout(url: str, clients: int, rate: int, seconds: float, prefix: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", _SERVER, url, prefix, str(port)])
    publisher = RedisBroker(url, prefix=prefix)
    latencies: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.1).close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        await publisher.start()
        tasks = await _connect_all(port, clients, latencies)
        sent, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            await publisher.publish("ticks", repr(time.time()).encode())
            sent += 1
            await asyncio.sleep(max(0.0, sent / rate - elapsed))
        await asyncio.sleep(1.0)  # stragglers
        expected, delivered = sent * clients, len(latencies)
        ordered = sorted(latencies) or [float("nan")]
        p50, p99 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.99)]
        print(
            f"fan-out: {clients} SSE clients, {sent / seconds:,.0f} events/s published for "
            f"{seconds:.0f} s: {delivered / seconds:,.0f} deliveries/s "
            f"({delivered / max(expected, 1):.1%} of {expected:,}), latency p50 "
            f"{p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms  (target p99 < 50 ms at 1,000/s)"
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await publisher.close()
        server.terminate()
        server.wait(10)


async def bench_groups(url: str, n: int) -> None:
    contenders = {"ours": bench_ours, "raw": bench_raw, "faststream": bench_faststream}
    rates: dict[str, float] = {}
    print(f"publish -> consumer group -> handler -> ack, {n:,} messages of {len(BODY)} B")
    for name, bench in contenders.items():
        prefix = f"streamkit-bench:{uuid.uuid4().hex[:8]}:"
        try:
            seconds = await bench(url, n, prefix)
        finally:
            await _cleanup(url, prefix)
        rates[name] = n / seconds
        print(f"  {name:<11} {seconds:8.2f} s  {rates[name]:>10,.0f} msg/s")
    print(f"ours / faststream: {rates['ours'] / rates['faststream']:.2f}x  (target >= 2x)")
    print(f"ours / raw:        {rates['ours'] / rates['raw']:.0%}    (target >= 50%)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["groups", "fanout"], help="run one benchmark")
    parser.add_argument("--n", type=int, default=100_000, help="messages per contender")
    parser.add_argument("--clients", type=int, default=1000, help="SSE clients (fan-out)")
    parser.add_argument("--rate", type=int, default=1000, help="events/s published (fan-out)")
    parser.add_argument("--seconds", type=float, default=5.0, help="fan-out duration")
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    if args.only in (None, "groups"):
        await bench_groups(args.url, args.n)
    if args.only in (None, "fanout"):
        prefix = f"streamkit-bench:{uuid.uuid4().hex[:8]}:"
        try:
            await bench_fanout(args.url, args.clients, args.rate, args.seconds, prefix)
        finally:
            await _cleanup(args.url, prefix)


if __name__ == "__main__":
    asyncio.run(main())
