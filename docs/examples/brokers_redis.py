"""RedisBroker: two workers (two brokers) sharing one Redis, as two processes would."""

import os
from collections.abc import AsyncIterator

import anyio

from fastapi_streamkit import RedisBroker
from fastapi_streamkit.brokers import Message

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


async def main(prefix: str = "example:") -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"a": [], "b": []}
    worker_a = RedisBroker(REDIS_URL, prefix=prefix, history=10_000, claim_idle=30.0)
    worker_b = RedisBroker(REDIS_URL, prefix=prefix)
    await worker_a.start()
    await worker_b.start()

    # Broadcast reaches the subscribers of every worker; ids are Redis stream ids.
    pages = {"a": worker_a.subscribe("prices"), "b": worker_b.subscribe("prices")}
    price_id = await worker_a.publish("prices", b"EUR 1.08", headers={"pair": "EURUSD"})
    for name, page in pages.items():
        message = await anext(page)
        seen[name].append(f"{message.topic} {message.body.decode()} {message.headers}")

    # A consumer group: each job goes to one worker; ack() so it is never redelivered.
    queue_a = worker_a.subscribe("jobs", group="resize")
    queue_b = worker_b.subscribe("jobs", group="resize")
    for n in range(4):
        await worker_b.publish("jobs", f"job {n}".encode())

    async def consume(name: str, broker: RedisBroker, queue: AsyncIterator[Message]) -> None:
        async for job in queue:
            seen[name].append(job.body.decode())
            await broker.ack(job)

    with anyio.move_on_after(1.0):  # long enough for all four jobs
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, "a", worker_a, queue_a)
            tg.start_soon(consume, "b", worker_b, queue_b)

    # Resume after a known id, from either worker (what Last-Event-ID does over SSE).
    await worker_a.publish("prices", b"EUR 1.09")
    later = await anext(worker_b.subscribe("prices", last_id=price_id))
    seen["resumed"] = [later.body.decode()]

    await worker_a.close()
    await worker_b.close()
    return seen


if __name__ == "__main__":
    print(anyio.run(main))
