"""The examples of docs/brokers.md, run: MemoryBroker, two RedisBrokers, two uvicorn processes."""

from __future__ import annotations

import json

import anyio
import httpx
import pytest

from ._examples import load
from ._redis import REDIS_URL, delete_prefix, require_redis, unique_prefix
from ._server import serve_process

pytestmark = pytest.mark.anyio


async def test_brokers_memory() -> None:
    with anyio.fail_after(10):
        seen = await load("brokers_memory").main()
    assert seen == {
        "page": ["kickoff", "goal"],
        "resumed": ["goal"],
        "jobs": ["resize image 7 (attempt 1)", "resize image 7 (attempt 2)"],
    }


async def test_brokers_redis() -> None:
    require_redis()
    prefix = unique_prefix()
    try:
        with anyio.fail_after(15):
            seen = await load("brokers_redis").main(prefix)
    finally:
        delete_prefix(REDIS_URL, prefix)
    price = "prices EUR 1.08 {'pair': 'EURUSD'}"
    assert seen["a"][0] == seen["b"][0] == price
    jobs = seen["a"][1:] + seen["b"][1:]
    assert sorted(jobs) == [f"job {n}" for n in range(4)]  # each job once, in one worker
    assert seen["resumed"] == ["EUR 1.09"]


async def _events(
    url: str, count: int, last_id: str | None = None
) -> list[tuple[str, dict[str, int]]]:
    headers = {"Last-Event-ID": last_id} if last_id else {}
    events: list[tuple[str, dict[str, int]]] = []
    event_id, data = "", ""
    async with httpx.AsyncClient(timeout=10) as client:
        async with client.stream("GET", f"{url}/events", headers=headers) as response:
            async for line in response.aiter_lines():
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data = line[5:]
                elif not line and data:  # a blank line ends an event (a ping has no data)
                    events.append((event_id, json.loads(data)))
                    event_id, data = "", ""
                    if len(events) == count:
                        break
    return events


async def test_brokers_workers_two_processes() -> None:
    require_redis()
    prefix = unique_prefix()
    env = {"REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix}
    target = "docs.examples.brokers_workers:app"
    try:
        with (
            serve_process(target, env=env) as (_, port_a),
            serve_process(target, env=env) as (
                _,
                port_b,
            ),
        ):
            a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
            async with httpx.AsyncClient() as client:
                assert (await client.get(f"{a}/health")).status_code == 204
            with anyio.fail_after(30):
                first: list[tuple[str, dict[str, int]]] = []
                async with anyio.create_task_group() as tg:

                    async def watch() -> None:
                        first.extend(await _events(a, 3))

                    tg.start_soon(watch)
                    await anyio.sleep(0.5)
                    async with httpx.AsyncClient() as client:
                        for image in range(3):
                            posted = await client.post(f"{b}/thumbnails", json={"image": image})
                            assert posted.status_code == 202
                # Each job was made once, by one of the two processes.
                assert sorted(e["image"] for _, e in first) == [0, 1, 2]
                async with httpx.AsyncClient() as client:
                    for image in (3, 4):
                        await client.post(f"{a}/thumbnails", json={"image": image})
                # The page reconnects to the other process and gets exactly what it missed.
                missed = await _events(b, 2, last_id=first[-1][0])
            assert sorted(e["image"] for _, e in missed) == [3, 4]
            assert not {i for i, _ in first} & {i for i, _ in missed}  # no duplicates
    finally:
        delete_prefix(REDIS_URL, prefix)
