"""Endless EventStreams for the graceful-shutdown test, run by uvicorn in a subprocess.

Each source's ``finally`` appends its stream id to the file named by ``STREAMKIT_MARKERS``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI

from fastapi_streamkit.sse import EventStream, ServerSentEvent

app = FastAPI()


@app.get("/events/{stream_id}")
async def events(stream_id: str) -> EventStream:
    markers = os.environ["STREAMKIT_MARKERS"]

    async def source() -> AsyncIterator[ServerSentEvent]:
        try:
            yield ServerSentEvent("ready", id=stream_id)
            await anyio.sleep_forever()
        finally:
            with open(markers, "a", encoding="utf-8") as file:
                file.write(f"{stream_id}\n")

    return EventStream(source())
