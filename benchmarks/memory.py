"""Memory per idle open stream, in-process, measured with tracemalloc over 1,000 streams.

Each stream's source awaits forever (its ``finally`` counts closes). Every response object is
called directly as an ASGI app, one task per stream with its own scope and client (as a server
makes per connection), so each row includes ~the same harness cost; the ``bare ASGI`` row is
that cost alone (an app that sends the head and waits for the disconnect), and "own" is a
row minus it. "Own" still includes the app's idle async generator parked in
``anyio.sleep_forever()`` (about 1-1.5 KiB: its frame, a future and a timer handle), the same
in every streaming row. Measured after every stream sent its head; then all clients disconnect,
and the script checks that every source was closed, every task ended and the memory came back.

    python benchmarks/memory.py [--streams 1000] [--spec 2.3|2.4]
"""

import argparse
import asyncio
import gc
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from _util import Client, http_scope, machine_notes

TARGET_KIB = 6.0


@dataclass
class Closes:
    """How many sources ran their ``finally``."""

    count: int = 0


def idle_source(closes: Closes) -> Callable[[], AsyncIterator[bytes]]:
    async def source() -> AsyncIterator[bytes]:
        try:
            await anyio.sleep_forever()
            yield b""  # never reached: makes this an async generator
        finally:
            closes.count += 1

    return source


def streamkit(closes: Closes) -> Any:
    from fastapi_streamkit.sse import EventStream

    return EventStream(idle_source(closes)())


def sse_starlette(closes: Closes) -> Any:
    from sse_starlette import EventSourceResponse

    return EventSourceResponse(idle_source(closes)())


def starlette(closes: Closes) -> Any:
    from starlette.responses import StreamingResponse

    return StreamingResponse(idle_source(closes)(), media_type="text/event-stream")


def bare(closes: Closes) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            closes.count += 1

    return app


COMPETITORS: dict[str, Callable[[Closes], Any]] = {
    "bare ASGI": bare,
    "streamkit": streamkit,
    "sse-starlette": sse_starlette,
    "starlette": starlette,
}


@dataclass
class Row:
    """One competitor's figures."""

    name: str
    per_stream: float  # bytes
    closed: int
    ended: int
    leftover: float  # bytes per stream still allocated after the disconnects


async def measure(name: str, make: Callable[[Closes], Any], streams: int, spec: str) -> Row:
    closes, started, ended = Closes(), Closes(), Closes()
    all_started, all_ended = anyio.Event(), anyio.Event()

    async def one(client: Client) -> None:
        async def send(message: dict[str, Any]) -> None:
            await client.send(message)
            if message["type"] == "http.response.start":
                started.count += 1
                if started.count == streams:
                    all_started.set()

        await make(closes)(http_scope("/events", spec=spec), client.receive, send)
        ended.count += 1
        if ended.count == streams:
            all_ended.set()

    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    clients = [Client() for _ in range(streams)]
    async with anyio.create_task_group() as group:
        for client in clients:
            group.start_soon(one, client)
        with anyio.fail_after(30):
            await all_started.wait()
        await anyio.sleep(0.2)  # let every stream settle into its idle wait
        gc.collect()
        per_stream = (tracemalloc.get_traced_memory()[0] - base) / streams
        for client in clients:
            client.disconnect()
        with anyio.move_on_after(2):
            await all_ended.wait()
        ended_in_time, closed_in_time = ended.count, closes.count
        group.cancel_scope.cancel()  # the streams that missed the disconnect
    del clients
    gc.collect()
    leftover = (tracemalloc.get_traced_memory()[0] - base) / streams
    return Row(name, per_stream, closed_in_time, ended_in_time, leftover)


def print_rows(rows: list[Row], streams: int) -> None:
    bare_cost = rows[0].per_stream
    print(f"  {'stream':<15}{'KiB/stream':>11}{'own KiB':>9}   after {streams} disconnects")
    for row in rows:
        own = row.per_stream - bare_cost
        target = ""
        if row.name == "streamkit":
            ok = own / 1024 <= TARGET_KIB
            target = f"  (own <= {TARGET_KIB:g} KiB: {'ok' if ok else 'MISSED'})"
        cleanup = (
            f"{row.ended}/{streams} ended, {row.closed}/{streams} sources closed, "
            f"{row.leftover:+.0f} B/stream left"
        )
        figures = f"{row.per_stream / 1024:>11.2f}{own / 1024:>9.2f}"
        print(f"  {row.name:<15}{figures}   {cleanup}{target}")


async def run(streams: int, spec: str) -> list[Row]:
    for make in COMPETITORS.values():  # import everything before measuring
        make(Closes())
    tracemalloc.start()
    try:
        return [await measure(name, make, streams, spec) for name, make in COMPETITORS.items()]
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--spec", choices=("2.3", "2.4"), default="2.3")
    parser.add_argument("--quick", action="store_true", help="200 streams")
    args = parser.parse_args()
    streams = 200 if args.quick else args.streams
    print(f"Memory per idle open stream: {streams} streams, asyncio, ASGI spec {args.spec}")
    print(machine_notes())
    started = time.perf_counter()
    print_rows(asyncio.run(run(streams, args.spec)), streams)
    print(f"took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
