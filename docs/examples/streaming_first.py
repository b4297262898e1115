"""A first stream: one event per second until the client leaves."""

from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI

from fastapi_streamkit import EventStream

app = FastAPI()


async def ticks() -> AsyncIterator[dict[str, int]]:
    n = 0
    try:
        while True:
            n += 1
            yield {"tick": n}
            await anyio.sleep(1)
    finally:
        print("client gone after", n, "ticks")  # runs at once when the client leaves


@app.get("/ticks")
async def stream_ticks() -> EventStream:
    return EventStream(ticks())
