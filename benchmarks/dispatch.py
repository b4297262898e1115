"""Dispatch cost of one message: fastapi_streamkit's get_session vs FastStream's FastAPI adapter.

One handler, one pydantic body model and one async ``Depends``, run per message by:

- ``streamkit session()``: ``StreamMessage(body, headers)`` + ``await session(message)``;
- ``streamkit open()``: the same through ``async with session.open(message)`` (what the
  router does, so a reply can be published before teardown);
- ``faststream adapter``: FastStream 0.7's FastAPI integration (``faststream.redis.fastapi.
  RedisRouter``), the wrapper its subscribers call per message, fed a FastStream message;
- ``faststream TestBroker``: the same handler subscribed on that router and published through
  ``TestRedisBroker`` (its in-memory test broker: broker and subscriber machinery included);
- ``by hand``: ``Order.model_validate_json(body)``, ``await dep()``, ``await handler(...)``: the
  ceiling.

Each contender runs in short interleaved rounds and the best round counts; rates are per second
of this process's CPU time, so other work on a shared machine disturbs them less.
Every contender's result is checked, so each computes the same thing.

    python benchmarks/dispatch.py [--rounds 7] [--messages 20000]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI
from pydantic import BaseModel

# Run as a script, sys.path[0] is benchmarks/, whose modules (redis.py) would shadow packages.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from fastapi_streamkit import StreamMessage, _compat  # noqa: E402

BODY = b'{"id": 3, "name": "widget", "qty": 4}'
HEADERS = {"content-type": "application/json"}
EXPECTED = 5


class Order(BaseModel):
    id: int
    name: str
    qty: int = 1


async def one() -> int:
    return 1


async def handler(order: Order, extra: Annotated[int, Depends(one)]) -> int:
    return order.qty + extra


Runner = Callable[[int], Awaitable[None]]


def streamkit_runners() -> dict[str, Runner]:
    app = FastAPI()
    session = StreamMessage.get_session(_compat.build_dependant(handler), lambda: app)

    async def call(n: int) -> None:
        for _ in range(n):
            result = await session(StreamMessage(BODY, HEADERS))
        assert result == EXPECTED

    async def open_(n: int) -> None:
        for _ in range(n):
            async with session.open(StreamMessage(BODY, HEADERS)) as result:
                pass
        assert result == EXPECTED

    return {"streamkit session()": call, "streamkit open()": open_}


def faststream_runners() -> dict[str, Runner]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "moved to faststream_fastapi"
        from faststream.message import StreamMessage as FastStreamMessage
        from faststream.redis import TestRedisBroker
        from faststream.redis.fastapi import RedisRouter

    router = RedisRouter()
    adapter = router._subscriber_compatibility_wrapper()(handler)

    async def decode(message: Any) -> Any:
        return json.loads(message.body)  # what FastStream's JSON decoder does

    async def through_adapter(n: int) -> None:
        for _ in range(n):
            message = FastStreamMessage(
                None, BODY, headers=dict(HEADERS), content_type="application/json"
            )
            message.set_decoder(decode)
            response = await adapter(message)
        assert response.body == EXPECTED

    broker_router = RedisRouter()
    seen: list[int] = []

    @broker_router.subscriber("orders")
    async def subscribed(order: Order, extra: Annotated[int, Depends(one)]) -> int:
        seen.append(order.qty + extra)
        return order.qty + extra

    async def through_test_broker(n: int) -> None:
        seen.clear()
        async with TestRedisBroker(broker_router.broker) as broker:
            for _ in range(n):
                await broker.publish(BODY, "orders", headers=dict(HEADERS))
        assert seen == [EXPECTED] * n

    return {"faststream adapter": through_adapter, "faststream TestBroker": through_test_broker}


def by_hand() -> dict[str, Runner]:
    async def run(n: int) -> None:
        for _ in range(n):
            result = await handler(Order.model_validate_json(BODY), await one())
        assert result == EXPECTED

    return {"by hand (ceiling)": run}


async def measure(runners: dict[str, Runner], *, rounds: int, messages: int) -> dict[str, float]:
    best: dict[str, float] = dict.fromkeys(runners, 0.0)
    slow = {"faststream TestBroker": 10, "faststream adapter": 4}
    for _ in range(rounds):
        for name, run in runners.items():
            n = max(messages // slow.get(name, 1), 100)
            gc.collect()  # no contender pays for another's garbage
            started = time.process_time()
            await run(n)
            best[name] = max(best[name], n / (time.process_time() - started))
    return best


def report(best: dict[str, float]) -> None:
    ours = best["streamkit open()"]
    adapter = best["faststream adapter"]
    ceiling = best["by hand (ceiling)"]
    print(f"{'contender':<24}{'msg/s':>12}")
    for name, rate in best.items():
        print(f"{name:<24}{rate:>12,.0f}")
    print()
    print(f"streamkit open() / faststream adapter : {ours / adapter:5.1f}x  (target >= 5x)")
    print(f"streamkit open() / faststream TestBroker: {ours / best['faststream TestBroker']:5.1f}x")
    print(f"by hand / streamkit open()            : {ceiling / ours:5.1f}x  (target <= 5x)")
    print(f"by hand / streamkit session()         : {ceiling / best['streamkit session()']:5.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    runners = {**streamkit_runners(), **faststream_runners(), **by_hand()}
    best = anyio.run(lambda: measure(runners, rounds=args.rounds, messages=args.messages))
    report(best)


if __name__ == "__main__":
    main()
