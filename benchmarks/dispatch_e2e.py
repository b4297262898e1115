"""End to end: publish -> broker -> FastAPI-style handler, ours vs FastStream's test broker.

Same handler on both sides: one pydantic body and one async ``Depends``. Ours runs a real
`StreamRouter` on the default `MemoryBroker` inside the app's lifespan (consumer groups, acks,
retries armed); FastStream 0.7's FastAPI integration (`RedisRouter`) runs through its in-memory
`TestRedisBroker`, its cheapest end-to-end path. Two shapes are measured:

- ``stream``: publish N messages, at most 500 ahead of the handler (the MemoryBroker keeps a
  bounded history of 1000 per topic), then wait until all are handled (messages/s);
- ``one-by-one``: publish one message and await its handling before the next (messages/s).

Run: ``.venv/bin/python benchmarks/dispatch_e2e.py [--messages N] [--rounds R] [--uvloop]``
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from fastapi_streamkit import StreamRouter
from fastapi_streamkit.testing import TestStreamApp


class Order(BaseModel):
    id: int
    qty: int = 1


async def tenant() -> str:
    return "acme"


class Counter:
    """Counts handled messages and wakes whoever waits for a count."""

    def __init__(self) -> None:
        self.count = 0
        self.target = -1
        self.reached = anyio.Event()

    def hit(self) -> None:
        self.count += 1
        if self.count == self.target:
            self.reached.set()

    async def wait_for(self, target: int) -> None:
        if self.count < target:
            self.target, self.reached = target, anyio.Event()
            await self.reached.wait()


_WINDOW = 500
Run = Callable[[int, bool], Awaitable[float]]


def ours(counter: Counter) -> tuple[FastAPI, StreamRouter]:
    router = StreamRouter()

    @router.subscriber("orders")
    async def handle(order: Order, who: Annotated[str, Depends(tenant)]) -> None:
        counter.hit()

    app = FastAPI()
    app.include_router(router)
    return app, router


async def run_ours(n: int, one_by_one: bool) -> float:
    counter = Counter()
    app, router = ours(counter)
    async with TestStreamApp(app, timeout=60):
        await router.publish("orders", {"id": 0})  # warm up
        await counter.wait_for(1)
        start = time.perf_counter()
        with anyio.fail_after(120):
            for i in range(n):
                await router.publish("orders", {"id": i, "qty": 2})
                if one_by_one:
                    await counter.wait_for(i + 2)
                elif i + 1 - counter.count >= _WINDOW:
                    await counter.wait_for(i + 1 - _WINDOW // 2)
            await counter.wait_for(n + 1)
        return n / (time.perf_counter() - start)


async def run_faststream(n: int, one_by_one: bool) -> float:
    # Run as a script, benchmarks/ is sys.path[0]: a sibling benchmarks/redis.py would shadow
    # the redis package that FastStream imports.
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from faststream.redis import TestRedisBroker
        from faststream.redis.fastapi import RedisRouter

    counter = Counter()
    router = RedisRouter()

    @router.subscriber("orders")
    async def handle(order: Order, who: Annotated[str, Depends(tenant)]) -> None:
        counter.hit()

    app = FastAPI()
    app.include_router(router)
    async with TestRedisBroker(router.broker) as broker:
        await broker.publish({"id": 0}, "orders")
        start = time.perf_counter()
        for i in range(n):  # its publish returns once the handler ran: both shapes are one
            await broker.publish({"id": i, "qty": 2}, "orders")
        await counter.wait_for(n + 1)
        return n / (time.perf_counter() - start)


def best(run: Run, n: int, one_by_one: bool, rounds: int, uvloop: bool) -> float:
    options = {"use_uvloop": uvloop}
    return max(anyio.run(run, n, one_by_one, backend_options=options) for _ in range(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--uvloop", action="store_true", help="run both sides on uvloop")
    args = parser.parse_args()
    n, rounds, uvloop = args.messages, args.rounds, args.uvloop
    loop = "uvloop" if uvloop else "asyncio"
    print(f"end to end on {loop}, {n} messages, best of {rounds} (messages/s, higher is better)")
    for shape, one_by_one in (("stream", False), ("one-by-one", True)):
        mine = best(run_ours, n, one_by_one, rounds, uvloop)
        theirs = best(run_faststream, max(n // 10, 1000), one_by_one, rounds, uvloop)
        print(
            f"  {shape:<11} fastapi_streamkit MemoryBroker {mine:>10,.0f}   "
            f"FastStream TestRedisBroker {theirs:>8,.0f}   ratio {mine / theirs:5.1f}x"
        )


if __name__ == "__main__":
    main()
