"""Server-Sent Events: what each kind of item becomes on the wire."""

import datetime
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from fastapi_streamkit import EventStream, ServerSentEvent

app = FastAPI()


class Price(BaseModel):
    symbol: str
    cents: int


async def prices() -> AsyncIterator[Any]:
    yield ServerSentEvent(comment="prices for today")  # ": prices for today"
    yield {"symbol": "ACME", "cents": 1250}  # any JSON-encodable object: data: {...}
    yield Price(symbol="INIT", cents=990)  # pydantic models, dataclasses, datetimes too
    yield ServerSentEvent(
        {"closed_at": datetime.datetime(2026, 1, 2, 17, 30)},
        event="close",  # EventSource: addEventListener("close", ...)
        id="2026-01-02",  # sent back by the browser as Last-Event-ID on reconnect
    )
    yield "market\nclosed"  # a str is the data as is: one data: line per line
    yield b"event: bye\ndata: already encoded\n\n"  # bytes pass through untouched


@app.get("/prices")
async def stream_prices() -> EventStream:
    return EventStream(prices(), retry=5000)  # retry: the browser's reconnection delay (ms)
