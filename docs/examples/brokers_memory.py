"""MemoryBroker on its own: broadcast with resume, a consumer group with redelivery."""

import anyio

from fastapi_streamkit import MemoryBroker


async def main() -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    broker = MemoryBroker(history=100, claim_idle=0.2)  # keep 100 messages per topic
    await broker.start()

    # Broadcast: every subscriber gets every message published after it subscribed.
    page = broker.subscribe("news")
    first = await broker.publish("news", b"kickoff")
    await broker.publish("news", b"goal")
    seen["page"] = [(await anext(page)).body.decode() for _ in range(2)]

    # Resume: a reconnecting page passes the last id it saw (SSE's Last-Event-ID).
    resumed = broker.subscribe("news", last_id=first)
    seen["resumed"] = [(await anext(resumed)).body.decode()]

    # A group shares the messages; one that is not acked comes back after claim_idle.
    jobs = broker.subscribe("jobs", group="workers")
    await broker.publish("jobs", b"resize image 7")
    crashed = await anext(jobs)  # a handler that died: never acked
    again = await anext(jobs)  # redelivered 0.2 s later, attempt 2
    await broker.ack(again)
    seen["jobs"] = [f"{m.body.decode()} (attempt {m.attempt})" for m in (crashed, again)]

    await broker.close()
    return seen


if __name__ == "__main__":
    print(anyio.run(main))
