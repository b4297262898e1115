"""Behind nginx and compression middleware: events still arrive one by one."""

from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from fastapi_streamkit import EventStream

app = FastAPI()
# GZipMiddleware leaves text/event-stream alone, so it never holds events back to compress them.
app.add_middleware(GZipMiddleware, minimum_size=10)


async def progress() -> AsyncIterator[dict[str, int]]:
    for percent in range(0, 101, 25):
        yield {"percent": percent}
        await anyio.sleep(0.2)


@app.get("/progress")
async def stream_progress() -> EventStream:
    # Sends "x-accel-buffering: no" (nginx passes each event on at once) and
    # "cache-control: no-cache" (no proxy or browser cache keeps a copy).
    return EventStream(progress())
