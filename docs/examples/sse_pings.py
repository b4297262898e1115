"""Pings: a ``: ping`` comment while the stream is idle keeps proxies and browsers patient."""

from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI

from fastapi_streamkit import EventStream

app = FastAPI()


async def rare_alerts() -> AsyncIterator[str]:
    while True:
        await anyio.sleep(3600)  # nothing to say for an hour
        yield "alert"


@app.get("/alerts")
async def stream_alerts() -> EventStream:
    # Default: a ping after 15 s without any event. None turns pings off.
    return EventStream(rare_alerts(), ping_interval=0.2)
